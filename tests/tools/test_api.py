"""The twelve endpoints of /api/v1/tools (plus executions and undeploy) through the API."""

import pytest
from django.urls import reverse

from tests.api_base import OwnedResourceAPITests, assert_problem
from tools.models import Tool, ToolExecution

TOOLS = "/api/v1/tools"


@pytest.fixture(autouse=True)
def _fake_api(fake_api):
    TestToolAPI.upstream = fake_api.url


class TestToolAPI(OwnedResourceAPITests):
    basename = "tools-api:tool"
    model = Tool
    upstream = ""
    invalid_payload = ({"name": "bad name!", "type": "http", "config": {"url": "http://x"}}, "name")
    compare_fields = ["description", "category"]

    def get_create_payload(self, user):
        return {
            "name": "get_item",
            "type": "http",
            "description": "Fetch one item",
            "category": "Catalogue",
            "config": {"url": self.upstream + "/items/{item_id}"},
        }

    def get_update_payload(self, obj):
        return {**self.get_create_payload(None), "description": "changed", "category": "Other"}

    def make_object(self, owner):
        from tools.services import tool_create

        return tool_create(
            owner=owner,
            name=f"existing-{Tool.objects.count()}",
            type="http",
            config={"url": self.upstream + "/echo"},
        )


def _url(tool, action=""):
    return f"{TOOLS}/{tool.pk}" + (f"/{action}" if action else "")


def test_create_fills_the_argument_schema_from_url_placeholders(client_for, developer, fake_api):
    response = client_for(developer).post(
        TOOLS,
        {"name": "get_item", "type": "http", "config": {"url": fake_api.url + "/items/{item_id}"}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "draft" and body["version"] == 1 and body["slug"] == "get_item"
    assert body["parameters_schema"]["required"] == ["item_id"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"type": "nope", "config": {}}, "type"),
        ({"type": "http", "config": {}}, "config"),
        ({"type": "http", "config": {"url": "http://x", "method": "BREW"}}, "config.method"),
        ({"type": "http", "config": {"url": "http://{host}/x"}}, "config.url"),
        ({"type": "http", "config": {"url": "ftp://example.com/x"}}, "config.url"),
        (
            {"type": "http", "config": {"url": "http://x", "headers": {"Authorization": "Bearer sk"}}},
            "config.headers.Authorization",
        ),
        (
            {"type": "http", "config": {"url": "http://x", "auth": {"type": "bearer"}}},
            "config.auth.secret_id",
        ),
        (
            {"type": "http", "config": {"url": "http://x", "response": {"path": "$[["}}},
            "config.response.path",
        ),
        (
            {"type": "http", "config": {"url": "http://x"}, "parameters_schema": {"type": "nonsense"}},
            "parameters_schema",
        ),
        (
            {"type": "http", "config": {"url": "http://x"}, "parameters_schema": {"type": "string"}},
            "parameters_schema",
        ),
        ({"type": "http", "config": {"url": "http://x"}, "timeout_seconds": 100000}, "timeout_seconds"),
        ({"type": "http", "config": {"url": "http://x"}, "test_cases": [{"expect": {}}]}, "test_cases[0]"),
        ({"type": "http", "config": "not an object"}, "config"),
    ],
)
def test_invalid_tools_are_400_naming_the_field(client_for, developer, payload, field):
    response = client_for(developer).post(TOOLS, {"name": "t1", **payload}, format="json")
    assert_problem(response, 400, field)
    assert not Tool.objects.exists()


def test_secret_of_another_user_cannot_be_referenced(client_for, developer, other_developer):
    from masterdata.services import secret_create

    theirs = secret_create(owner=other_developer, name="k", value="v-123456789")
    payload = {
        "name": "t1",
        "type": "http",
        "config": {"url": "http://example.com/x", "auth": {"type": "bearer", "secret_id": str(theirs.pk)}},
    }
    assert_problem(client_for(developer).post(TOOLS, payload, format="json"), 400, "config.auth.secret_id")


def test_duplicate_name_is_400(client_for, developer, make_http_tool):
    make_http_tool(developer, name="dup")
    payload = {"name": "dup", "type": "http", "config": {"url": "http://example.com/"}}
    assert_problem(client_for(developer).post(TOOLS, payload, format="json"), 400, "name")


def test_categories_and_types(client_for, developer, other_developer, make_http_tool):
    make_http_tool(developer, name="a", category="Web")
    make_http_tool(developer, name="b", category="Web")
    make_http_tool(other_developer, name="c", category="Secret stuff")
    client = client_for(developer)
    assert client.get(f"{TOOLS}/categories").json() == [{"category": "Web", "count": 2}]
    types = {t["type"]: t for t in client.get(f"{TOOLS}/types").json()}
    assert "http" in types and types["http"]["config_schema"]["required"] == ["url"]
    assert types["http"]["description"]


def test_list_filters(client_for, developer, make_http_tool):
    make_http_tool(developer, name="a", category="Web", tags=["x"])
    make_http_tool(developer, name="b", deploy=True)
    client = client_for(developer)
    assert [t["name"] for t in client.get(f"{TOOLS}?status=deployed").json()["results"]] == ["b"]
    assert [t["name"] for t in client.get(f"{TOOLS}?category=web").json()["results"]] == ["a"]
    assert [t["name"] for t in client.get(f"{TOOLS}?type=http&ordering=name").json()["results"]] == ["a", "b"]
    assert [t["name"] for t in client.get(f"{TOOLS}?tags=x").json()["results"]] == ["a"]


def test_execute_sync_returns_the_finished_execution(client_for, developer, make_http_tool):
    tool = make_http_tool(developer)
    response = client_for(developer).post(
        _url(tool, "execute"), {"arguments": {"item_id": "42"}}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["result"] == {"id": "42", "name": "item 42", "tags": ["a", "b"]}
    assert body["metadata"] == {"http_status": 200}
    assert body["tool_version"] == 1 and body["user"] == developer.username and body["attempt"] == 1
    assert body["duration_ms"] > 0 and len(body["trace_id"]) == 32


def test_execute_invalid_arguments_is_400_naming_the_argument(client_for, developer, make_http_tool):
    tool = make_http_tool(developer)
    client = client_for(developer)
    assert_problem(
        client.post(_url(tool, "execute"), {"arguments": {}}, format="json"), 400, "arguments.item_id"
    )
    assert_problem(
        client.post(_url(tool, "execute"), {"arguments": {"item_id": 5}}, format="json"),
        400,
        "arguments.item_id",
    )
    assert_problem(client.post(_url(tool, "execute"), {"arguments": [1]}, format="json"), 400, "arguments")
    assert not ToolExecution.objects.exists()


def test_execute_async_answers_202_and_the_execution_can_be_polled(
    client_for, developer, make_http_tool, django_capture_on_commit_callbacks
):
    tool = make_http_tool(developer)
    client = client_for(developer)
    # Test settings run tasks eagerly once the transaction commits; test_worker.py uses a real worker.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            _url(tool, "execute") + "?async=true", {"arguments": {"item_id": "7"}}, format="json"
        )
    assert response.status_code == 202
    execution_id = response.json()["id"]
    assert response.json()["status"] == "queued"
    polled = client.get(f"{TOOLS}/executions/{execution_id}")
    assert polled.status_code == 200
    assert polled.json()["status"] == "succeeded" and polled.json()["result"]["id"] == "7"
    assert ToolExecution.objects.get(pk=execution_id).pending_arguments == ""


def test_user_role_may_execute_a_shared_tool_but_not_change_it(
    client_for, developer, plain_user, make_http_tool
):
    tool = make_http_tool(developer)
    client = client_for(plain_user)
    assert_problem(client.post(_url(tool, "execute"), {"arguments": {"item_id": "1"}}, format="json"), 404)
    owner = client_for(developer)
    share = owner.post(
        _url(tool, "share"), {"users": [plain_user.username], "actions": ["use"]}, format="json"
    )
    assert share.status_code == 200
    assert (
        client.post(_url(tool, "execute"), {"arguments": {"item_id": "1"}}, format="json").status_code == 200
    )
    assert_problem(client.post(_url(tool, "validate")), 403)
    assert_problem(client.post(_url(tool, "deploy")), 403)


def test_validate_then_deploy_then_undeploy(client_for, developer, make_http_tool):
    tool = make_http_tool(developer)
    client = client_for(developer)
    assert_problem(client.post(_url(tool, "deploy")), 409)
    report = client.post(_url(tool, "validate")).json()
    assert report["valid"] is True and report["status"] == "validated"
    assert {c["name"] for c in report["checks"]} >= {"parameters_schema", "config", "url_allowed"}
    deployed = client.post(_url(tool, "deploy")).json()
    assert deployed["status"] == "deployed" and deployed["deployed_at"]
    assert client.post(_url(tool, "undeploy")).json()["status"] == "disabled"
    assert client.post(_url(tool, "deploy")).json()["status"] == "deployed"


def test_changing_behaviour_bumps_the_version_and_returns_to_draft(
    client_for, developer, make_http_tool, fake_api
):
    tool = make_http_tool(developer, deploy=True)
    client = client_for(developer)
    same = client.patch(_url(tool), {"description": "only words"}, format="json").json()
    assert same["version"] == 1 and same["status"] == "deployed"
    changed = client.patch(_url(tool), {"config": {"url": fake_api.url + "/echo"}}, format="json").json()
    assert changed["version"] == 2 and changed["status"] == "draft" and changed["validation_report"] == []


def test_validate_reports_failures_and_keeps_draft(client_for, developer, settings):
    created = client_for(developer).post(
        TOOLS, {"name": "local", "type": "http", "config": {"url": "http://localhost:9/x"}}, format="json"
    )
    tool = Tool.objects.get(pk=created.json()["id"])
    settings.SAFE_HTTP_ALLOWLIST = []  # the admin withdrew the allowance after the tool was saved
    report = client_for(developer).post(_url(tool, "validate")).json()
    assert report["valid"] is False and report["status"] == "draft"
    failed = [c for c in report["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["config"] and "localhost" in failed[0]["message"]


def test_test_endpoint_runs_given_and_stored_cases(client_for, developer, make_http_tool):
    tool = make_http_tool(
        developer,
        output_schema={"type": "object", "required": ["id", "name"]},
        test_cases=[
            {
                "name": "found",
                "arguments": {"item_id": "3"},
                "expect": {"equals": {"$.id": "3"}, "output_schema": True},
            },
            {"name": "wrong", "arguments": {"item_id": "4"}, "expect": {"contains": {"$.tags": "zzz"}}},
        ],
    )
    client = client_for(developer)
    report = client.post(_url(tool, "test"), {}, format="json").json()
    assert report["total"] == 2 and report["failed"] == 1 and report["passed"] is False
    found, wrong = report["cases"]
    assert found["passed"] and found["status"] == "succeeded" and found["output"]["id"] == "3"
    assert wrong["failures"] == ["$.tags (['a', 'b']) does not contain 'zzz'"]
    one = client.post(
        _url(tool, "test"),
        {"arguments": {"item_id": "9"}, "expect": {"contains": {"$.name": "item 9"}}},
        format="json",
    ).json()
    assert one["passed"] is True and one["total"] == 1
    bad = client.post(
        _url(tool, "test"), {"cases": [{"arguments": {"item_id": "1"}, "expect": {"nope": 1}}]}, format="json"
    )
    assert_problem(bad, 400, "cases[0].expect")
    # test runs are recorded as tests and do not count in the stats
    assert ToolExecution.objects.filter(is_test=True).count() == 3
    assert client.get(_url(tool, "stats")).json()["calls"] == 0


def test_test_endpoint_without_cases_is_400(client_for, developer, make_http_tool):
    tool = make_http_tool(developer)
    assert_problem(client_for(developer).post(_url(tool, "test"), {}, format="json"), 400, "cases")


def test_stats_aggregate_calls_durations_errors_and_days(client_for, developer, make_http_tool, fake_api):
    tool = make_http_tool(developer, path="/status/{code}")
    client = client_for(developer)
    for code in ("200", "200", "200", "500"):
        client.post(_url(tool, "execute"), {"arguments": {"code": code}}, format="json")
    stats = client.get(_url(tool, "stats")).json()
    assert stats["calls"] == 4 and stats["succeeded"] == 3 and stats["failed"] == 1
    assert stats["success_rate"] == 0.75
    assert stats["errors_by_kind"] == {"upstream": 1}
    assert stats["duration_ms"]["p50"] > 0 and stats["duration_ms"]["p95"] >= stats["duration_ms"]["p50"]
    assert len(stats["per_day"]) == 1 and stats["per_day"][0]["calls"] == 4
    assert_problem(client.get(_url(tool, "stats") + "?days=0"), 400, "days")


def test_stats_query_count_is_constant(client_for, developer, make_http_tool, django_assert_max_num_queries):
    tool = make_http_tool(developer)
    client = client_for(developer)
    for i in range(5):
        client.post(_url(tool, "execute"), {"arguments": {"item_id": str(i)}}, format="json")
    with django_assert_max_num_queries(12):
        assert client.get(_url(tool, "stats")).json()["calls"] == 5


def test_executions_list_shows_only_visible_ones(client_for, developer, other_developer, make_http_tool):
    mine = make_http_tool(developer)
    theirs = make_http_tool(other_developer, name="theirs")
    client_for(developer).post(_url(mine, "execute"), {"arguments": {"item_id": "1"}}, format="json")
    client_for(other_developer).post(_url(theirs, "execute"), {"arguments": {"item_id": "2"}}, format="json")
    listed = client_for(developer).get(f"{TOOLS}/executions").json()["results"]
    assert [e["tool_name"] for e in listed] == ["get_item"]
    other_id = ToolExecution.objects.get(tool=theirs).pk
    assert_problem(client_for(developer).get(f"{TOOLS}/executions/{other_id}"), 404)
    assert (
        client_for(developer).get(f"{TOOLS}/executions?tool={mine.pk}&status=succeeded").json()["count"] == 1
    )


def test_url_names_follow_the_house_style():
    assert reverse("tools-api:tool-list") == TOOLS
    assert reverse("tools-api:execution-list") == f"{TOOLS}/executions"


def test_schemas_left_to_the_type_follow_a_config_change(client_for, developer, fake_api):
    client = client_for(developer)
    created = client.post(
        TOOLS,
        {"name": "t", "type": "http", "config": {"url": fake_api.url + "/items/{item_id}"}},
        format="json",
    ).json()
    changed = client.patch(
        f"{TOOLS}/{created['id']}",
        {"config": {"url": fake_api.url + "/users/{user}/posts/{post}"}},
        format="json",
    ).json()
    assert changed["parameters_schema"]["required"] == ["user", "post"]
    own = {
        "type": "object",
        "properties": {"user": {"type": "string", "minLength": 3}, "post": {"type": "string"}},
    }
    client.patch(f"{TOOLS}/{created['id']}", {"parameters_schema": own}, format="json")
    kept = client.patch(
        f"{TOOLS}/{created['id']}", {"config": {"url": fake_api.url + "/u/{user}/p/{post}"}}, format="json"
    ).json()
    assert kept["parameters_schema"] == own  # the user's own schema is never replaced


def test_builtin_tools_get_their_functions_output_schema(client_for, developer):
    body = (
        client_for(developer)
        .post(TOOLS, {"name": "calc", "type": "builtin", "config": {"function": "calculator"}}, format="json")
        .json()
    )
    assert body["output_schema"]["properties"]["result"]
    assert body["parameters_schema"]["required"] == ["expression"]


PETSTORE = {
    "openapi": "3.0.3",
    "info": {"title": "Pets", "version": "1"},
    "paths": {
        "/items/{item_id}": {
            "get": {
                "operationId": "getItem",
                "parameters": [
                    {"name": "item_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
            }
        },
        "/echo": {
            "post": {
                "operationId": "echo it",
                "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
            }
        },
    },
}


def test_import_openapi_creates_draft_http_tools(client_for, developer, fake_api):
    client = client_for(developer)
    response = client.post(
        f"{TOOLS}/import-openapi",
        {"document": PETSTORE, "base_url": fake_api.url, "category": "Pets"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    tools = {t["name"]: t for t in response.json()}
    assert set(tools) == {"getItem", "echo_it"}
    assert all(
        t["status"] == "draft" and t["type"] == "http" and t["category"] == "Pets" for t in tools.values()
    )
    run = client.post(
        f"{TOOLS}/{tools['getItem']['id']}/execute", {"arguments": {"item_id": "3"}}, format="json"
    )
    assert run.json()["result"]["id"] == "3"


def test_import_openapi_input_errors_and_roles(client_for, developer, plain_user):
    client = client_for(developer)
    assert_problem(client.post(f"{TOOLS}/import-openapi", {}, format="json"), 400, "document")
    bad = client.post(
        f"{TOOLS}/import-openapi", {"document": {"swagger": "2.0"}, "base_url": "http://x"}, format="json"
    )
    assert_problem(bad, 400, "document")
    assert_problem(
        client_for(plain_user).post(f"{TOOLS}/import-openapi", {"document": PETSTORE}, format="json"), 403
    )
    assert not Tool.objects.exists()
