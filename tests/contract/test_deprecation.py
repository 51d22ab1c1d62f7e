"""One mechanism marks an operation or a field deprecated: `deprecated: true` in the schema
and `Deprecation`/`Sunset` headers on the operation's responses (tests/testapp's widget)."""

from drf_spectacular.generators import SchemaGenerator

from tests.testapp.models import Widget


def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def test_deprecated_operation_and_field_are_marked_in_the_schema():
    document = schema()
    operation = document["paths"]["/api/v1/test/widgets/{id}/legacy-size"]["get"]
    assert operation["deprecated"] is True
    assert operation["description"].startswith("**Deprecated**; removed after 2099-01-01")
    assert operation["summary"] == "The widget's size under its old name"
    assert {"Deprecation", "Sunset"} <= set(operation["responses"]["200"]["headers"])
    field = document["components"]["schemas"]["LegacySize"]["properties"]["old_size"]
    assert field["deprecated"] is True and "removed after 2099-01-01" in field["description"]
    # nothing else is deprecated
    others = [
        (path, method)
        for path, operations in document["paths"].items()
        for method, op in operations.items()
        if op.get("deprecated") and "legacy-size" not in path
    ]
    assert others == []
    assert "deprecated" not in document["components"]["schemas"]["LegacySize"]["properties"]["size"]


def test_deprecated_operation_answers_with_deprecation_and_sunset_headers(client_for, developer):
    widget = Widget.objects.create(owner=developer, name="w", size=3)
    response = client_for(developer).get(f"/api/v1/test/widgets/{widget.pk}/legacy-size")
    assert response.status_code == 200
    assert response.json() == {"size": 3, "old_size": 3}
    assert response["Deprecation"] == "Thu, 01 Jan 2026 00:00:00 GMT"
    assert response["Sunset"] == "Thu, 01 Jan 2099 00:00:00 GMT"
    assert response["Link"] == '<https://example.com/migrate>; rel="deprecation"'
    plain = client_for(developer).get(f"/api/v1/test/widgets/{widget.pk}")
    assert "Deprecation" not in plain and "Sunset" not in plain
