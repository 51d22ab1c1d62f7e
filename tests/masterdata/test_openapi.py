from drf_spectacular.generators import SchemaGenerator

SPEC_ENDPOINTS = {
    *(
        (method, f"/api/v1/master-data/{resource}{suffix}")
        for resource in ("skills", "constraints", "prompts", "models", "secrets")
        for method, suffix in (
            ("get", ""),
            ("post", ""),
            ("get", "/{id}"),
            ("put", "/{id}"),
            ("delete", "/{id}"),
        )
    ),
    ("get", "/api/v1/master-data/skills/categories"),
    ("get", "/api/v1/master-data/skills/search"),
    ("get", "/api/v1/master-data/constraints/types"),
    ("get", "/api/v1/master-data/prompts/categories"),
    ("get", "/api/v1/master-data/models/providers"),
    ("get", "/api/v1/master-data/stats"),
}


def test_schema_lists_every_master_data_endpoint_with_typed_bodies(db):
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = {
        (method, path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert len(SPEC_ENDPOINTS) == 31  # the 30 of the API contract, plus stats
    missing = SPEC_ENDPOINTS - set(operations)
    assert not missing, missing
    for key in SPEC_ENDPOINTS:
        operation = operations[key]
        if key[0] in {"post", "put"}:
            assert "$ref" in str(operation["requestBody"]["content"]["application/json"]["schema"]), key
        if key[0] != "delete":
            success = next(code for code in operation["responses"] if code.startswith("2"))
            assert operation["responses"][success]["content"]["application/json"]["schema"], key
    assert operations[("post", "/api/v1/master-data/prompts/{id}/render")]["operationId"] == (
        "master_data_prompts_render"
    )
