import json
import re

import pytest
from django.core.management import call_command

from tests.api_base import assert_problem

pytestmark = pytest.mark.django_db


def test_malformed_json_is_400_problem(client_for, developer):
    response = client_for(developer).post(
        "/api/v1/test/widgets", data="{not json", content_type="application/json"
    )
    assert_problem(response, 400)


def test_wrong_field_type_names_the_field(client_for, developer):
    response = client_for(developer).post("/api/v1/test/widgets", {"name": ["a"], "size": 1}, format="json")
    assert_problem(response, 400, "name")


def test_unsupported_media_type_is_415_problem(client_for, developer):
    response = client_for(developer).post("/api/v1/test/widgets", data="<x/>", content_type="application/xml")
    assert_problem(response, 415)


def test_unknown_api_path_is_json_404(client, db):
    assert_problem(client.get("/api/v1/no-such-thing"), 404)


def test_wrong_method_is_405_problem(api_client):
    assert_problem(api_client.get("/api/v1/auth/login"), 405)


def test_body_over_the_cap_is_413(client_for, developer, settings):
    settings.MAX_REQUEST_BODY_BYTES = 1000
    response = client_for(developer).post(
        "/api/v1/test/widgets", {"name": "x" * 2000, "size": 1}, format="json"
    )
    body = assert_problem(response, 413)
    assert "1000" in body["detail"]


def test_server_error_is_problem_json_without_traceback(client, db, settings):
    from agentmesh.core.views import server_error

    response = server_error(client.get("/api/v1/x").wsgi_request)
    assert response.status_code == 500
    assert json.loads(response.content) == {
        "type": "urn:agentmesh:error:internal-server-error",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "An internal error occurred.",
        "errors": [],
    }


def test_openapi_schema_is_served_and_declares_jwt(client, db):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "jwtAuth" in schema["components"]["securitySchemes"]
    assert "/api/v1/auth/login" in schema["paths"]
    assert "/api/v1/system/health" in schema["paths"]


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_load_assets_locally(client, db, path):
    response = client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert urls, html
    external = [u for u in urls if re.match(r"^(https?:)?//", u)]
    assert external == [], external


def test_static_assets_of_swagger_ui_are_served(client, db):
    html = client.get("/api/docs/").content.decode()
    bundle = re.search(r'src="([^"]*swagger-ui-bundle\.js)"', html).group(1)
    from django.contrib.staticfiles import finders

    assert finders.find(bundle.removeprefix("/static/")), bundle


def test_spectacular_validate_fail_on_warn(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert out.read_text().startswith("openapi: 3")


def test_admin_login_page(client, db):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b"Django" in response.content or b"admin" in response.content


def test_admin_user_changelist(client, make_user):
    admin = make_user("admin", is_staff=True, is_superuser=True)
    client.force_login(admin)
    response = client.get("/admin/accounts/user/")
    assert response.status_code == 200
    assert admin.username.encode() in response.content


def test_list_item_errors_name_the_index():
    from rest_framework import serializers

    from agentmesh.core.exceptions import flatten_errors

    class Tags(serializers.Serializer):
        tags = serializers.ListField(child=serializers.IntegerField())

    s = Tags(data={"tags": [1, "x", 3, "y"]})
    assert not s.is_valid()
    fields = [e["field"] for e in flatten_errors(s.errors)]
    assert fields == ["tags[1]", "tags[3]"]
