"""The served schema: JSON-only bodies, every operation its own summary, documented errors in
the one shape, closed request bodies, honest types."""

import pytest
from drf_spectacular.generators import SchemaGenerator

from agentmesh.core.viewsets import OwnedModelViewSet, ServiceBackedViewSet
from agents.api.interact import InteractMixin

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def document():
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


# The only exceptions, declared on those views alone: a template document or an export bundle as
# a file upload, or the bundle as a YAML body.
NOT_JSON_ONLY = {
    ("post", "/api/v1/templates/import"): {"application/json", "multipart/form-data"},
    ("post", "/api/v1/integration/import"): {"application/json", "application/yaml", "application/x-yaml"},
    ("post", "/api/v1/integration/import-file"): {"multipart/form-data"},
}


def test_request_bodies_are_json_only(document):
    for path, method, operation in operations(document):
        if "requestBody" in operation:
            expected = NOT_JSON_ONLY.get((method, path), {"application/json"})
            assert set(operation["requestBody"]["content"]) == expected, (method, path)


def test_every_operation_has_its_own_summary_and_description(document):
    inherited = {
        doc.strip()
        for doc in (OwnedModelViewSet.__doc__, ServiceBackedViewSet.__doc__, InteractMixin.__doc__)
        if doc
    }
    summaries = []
    for path, method, operation in operations(document):
        assert operation.get("summary") and operation.get("description"), (method, path)
        assert not any(doc[:40] in operation["description"] for doc in inherited), (method, path)
        summaries.append(operation["summary"])
    assert len(summaries) == len(set(summaries))
    agents = document["paths"]["/api/v1/agents"]
    assert agents["get"]["summary"] == "List agents" and agents["post"]["summary"] == "Create agent"


def test_errors_are_documented_with_the_problem_component(document):
    problem = {"$ref": "#/components/schemas/Problem"}
    assert set(document["components"]["schemas"]["Problem"]["required"]) == {
        "type",
        "title",
        "status",
        "detail",
        "errors",
    }
    assert "ProblemItem" in document["components"]["schemas"]
    for path, method, operation in operations(document):
        responses = operation["responses"]
        if path != "/api/v1/system/health":
            assert {"401", "403"} <= set(responses), (method, path)
        if path not in ("/api/v1/system/health", "/api/v1/auth/logout"):  # not throttled
            assert "429" in responses, (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)
        if "requestBody" in operation:
            assert {"400", "413", "415"} <= set(responses), (method, path)
        if method == "delete":
            assert "409" in responses, (method, path)
        if method in ("post", "put", "patch", "delete"):  # maintenance mode, feature flags
            assert "503" in responses, (method, path)
            assert responses["503"]["content"]["application/json"]["schema"] == problem, (method, path)
        for code, response in responses.items():
            if code in {"401", "403", "413", "415", "429"}:
                assert response["content"]["application/json"]["schema"] == problem, (method, path, code)


def test_request_bodies_refuse_unknown_fields(document):
    schemas = document["components"]["schemas"]
    for name in ("AgentRequest", "PatchedAgentRequest", "ToolRequest", "WorkflowRequest", "LoginRequest"):
        assert schemas[name]["additionalProperties"] is False, name
    assert "additionalProperties" not in schemas["Agent"]  # responses stay open


def test_declared_types_and_parameters(document):
    schemas = document["components"]["schemas"]
    assert schemas["ModelConfig"]["properties"]["api_key_secret_mask"]["nullable"] is True
    events = document["paths"]["/api/v1/observability/events"]["post"]
    body = events["requestBody"]["content"]["application/json"]["schema"]
    assert body["oneOf"][0] == {"$ref": "#/components/schemas/EventInRequest"}
    assert body["oneOf"][1]["type"] == "array" and body["oneOf"][1]["maxItems"] == 1000
    executions = document["paths"]["/api/v1/workflows/{id}/executions"]["get"]
    assert {"since", "until", "status", "version"} <= {p["name"] for p in executions["parameters"]}
    expect = schemas["ToolTestExpectRequest"]["properties"]
    assert {"status", "output_schema", "equals", "contains", "max_duration_ms"} == set(expect)
    test_body = schemas["TestRequestRequest"]["properties"]
    assert test_body["expect"]["allOf"] == [{"$ref": "#/components/schemas/ToolTestExpectRequest"}]
