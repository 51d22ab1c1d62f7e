# ruff: noqa: F811  (the agents fixtures are imported for use here)
"""Feature flags: sticky percentage rollout, targeting by user, group and role, each real
feature switched off (503 naming the flag, 403 when a rule excludes the caller), the flags a
request was served under on its span, and GET/PUT/DELETE /system/flags."""

import pytest
from django.contrib.auth.models import Group

from agentmesh.accounts.models import Role, User
from agentmesh.core.features import FEATURES, flag_is_active
from observability.models import ObservabilityEvent, Span
from system.services.flags import flag_set
from tests.agents.conftest import builtin_tool, deployed_agent, fake_model, fake_openai, llm  # noqa: F401
from tests.agents.factories import make_deployed_tool
from tests.api_base import assert_problem
from tools.models import Tool, ToolExecution

pytestmark = pytest.mark.django_db
FLAGS = "/api/v1/system/flags"


def execute(client, tool, *, query=""):
    return client.post(
        f"/api/v1/tools/{tool.pk}/execute{query}", {"arguments": {"expression": "2*3"}}, format="json"
    )


def assert_flag_refused(response, status: int, flag: str) -> None:
    body = assert_problem(response, status)
    assert f"'{flag}'" in body["detail"], body
    assert body["errors"][0]["code"] == ("feature_disabled" if status == 503 else "feature_not_enabled")


# --- rollout and targeting ---------------------------------------------------------------------
def test_a_30_percent_rollout_is_sticky_per_user_and_grows_without_losing_anyone():
    flag_set(name="streaming", everyone=None, percent=30, superusers=False)
    users = [User(pk=n, username=f"u{n}", role=Role.USER) for n in range(1, 1001)]
    first = {u.pk for u in users if flag_is_active("streaming", u)}
    assert 250 <= len(first) <= 350, len(first)
    assert first == {u.pk for u in users if flag_is_active("streaming", u)}  # the same answer again

    flag_set(name="streaming", percent=50)
    second = {u.pk for u in users if flag_is_active("streaming", u)}
    assert 450 <= len(second) <= 550, len(second)
    assert first <= second  # everyone who had it keeps it

    # another flag at 30 % picks its own users (the flag name is in the hash)
    flag_set(name="background_runs", everyone=None, percent=30, superusers=False)
    other = {u.pk for u in users if flag_is_active("background_runs", u)}
    assert 250 <= len(other) <= 350 and other != first


def test_targeting_by_group(developer, other_developer, client_for):
    beta = Group.objects.create(name="beta")
    developer.groups.add(beta)
    own, theirs = make_deployed_tool(developer), make_deployed_tool(other_developer)
    flag_set(name="tool_type.builtin", everyone=None, groups=["beta"], superusers=False)
    response = execute(client_for(developer), own)
    assert response.status_code == 200 and response.json()["status"] == "succeeded", response.json()
    assert_flag_refused(execute(client_for(other_developer), theirs), 403, "tool_type.builtin")


def test_targeting_by_role_and_by_user(developer, make_user, client_for):
    tool = make_deployed_tool(developer)
    admin = make_user(Role.ADMIN)  # not a superuser: only the rules decide
    flag_set(name="tool_type.builtin", everyone=None, roles=["developer"], superusers=False)
    assert execute(client_for(developer), tool).status_code == 200
    assert_flag_refused(execute(client_for(admin), tool), 403, "tool_type.builtin")

    flag_set(name="tool_type.builtin", roles=[], users=[admin.pk])
    assert execute(client_for(admin), tool).status_code == 200
    assert_flag_refused(execute(client_for(developer), tool), 403, "tool_type.builtin")


# --- each feature --------------------------------------------------------------------------------
def test_a_disabled_tool_type_refuses_executions_and_creation(developer, client_for):
    client = client_for(developer)
    tool = make_deployed_tool(developer)
    flag_set(name="tool_type.builtin", everyone=False)
    assert_flag_refused(execute(client, tool), 503, "tool_type.builtin")
    assert_flag_refused(execute(client, tool, query="?async=true"), 503, "tool_type.builtin")
    created = client.post(
        "/api/v1/tools", {"name": "c2", "type": "builtin", "config": {"function": "calculator"}}
    )
    assert_flag_refused(created, 503, "tool_type.builtin")
    assert ToolExecution.objects.count() == 0 and Tool.objects.count() == 1

    other_type = client.post(
        "/api/v1/tools",
        {"name": "h", "type": "http", "config": {"url": "http://127.0.0.1:9/x", "method": "GET"}},
        format="json",
    )
    assert other_type.status_code == 201, other_type.json()  # only the switched-off type
    flag_set(name="tool_type.builtin", everyone=True)
    assert execute(client, tool).status_code == 200


def test_an_agent_gets_a_disabled_tool_as_a_tool_error(
    developer, client_for, llm, deployed_agent, builtin_tool
):
    from tests.fake_llm import Reply

    agent = deployed_agent(tools=[builtin_tool()])
    flag_set(name="tool_type.builtin", everyone=False)
    llm.push(Reply.tool_calls([("calculator", {"expression": "1+1"})]), Reply.text("sorry"))
    body = (
        client_for(developer)
        .post(f"/api/v1/agents/{agent.pk}/interact", {"input": "go"}, format="json")
        .json()
    )
    assert body["status"] == "succeeded", body
    tool_message = next(m for m in body["messages"] if m["role"] == "tool")
    assert "tool_type.builtin" in tool_message["content"]


def test_registration_flag(api_client, make_user):
    body = {"username": "newbie", "email": "newbie@example.com", "password": "s3cure-Passw0rd!"}
    flag_set(name="registration", everyone=False)
    assert_flag_refused(api_client.post("/api/v1/auth/register", body, format="json"), 503, "registration")
    flag_set(name="registration", everyone=None, roles=["admin"])  # nobody anonymous is targeted
    assert_flag_refused(api_client.post("/api/v1/auth/register", body, format="json"), 403, "registration")
    flag_set(name="registration", everyone=True)
    assert api_client.post("/api/v1/auth/register", body, format="json").status_code == 201


def test_streaming_and_background_runs_flags(developer, client_for, llm, deployed_agent):
    from workflows.services import workflow_create

    client = client_for(developer)
    agent = deployed_agent()
    flag_set(name="streaming", everyone=False)
    url = f"/api/v1/agents/{agent.pk}/interact"
    assert_flag_refused(client.post(url, {"input": "hi", "stream": True}, format="json"), 503, "streaming")
    flag_set(name="background_runs", everyone=False)
    assert_flag_refused(
        client.post(url, {"input": "hi", "background": True}, format="json"), 503, "background_runs"
    )
    workflow = workflow_create(
        owner=developer,
        name="w",
        definition={"nodes": [{"id": "a", "type": "transform", "config": {"template": "1"}}]},
    )
    execute_url = f"/api/v1/workflows/{workflow.pk}/execute"
    assert_flag_refused(client.post(execute_url, {"mode": "async"}, format="json"), 503, "background_runs")
    assert client.post(execute_url, {"mode": "sync"}, format="json").status_code == 200
    from tests.fake_llm import Reply

    llm.push(Reply.text("hello"))
    assert client.post(url, {"input": "hi"}, format="json").status_code == 200  # plain sync still works


def test_mcp_webhooks_and_triggers_flags(developer, client_for, api_client):
    from integration.services.webhooks import trigger_create, webhook_create, webhooks_dispatch_event
    from observability.services import event_record
    from workflows.services import workflow_create

    client = client_for(developer)
    flag_set(name="mcp", everyone=False)
    assert_flag_refused(
        client.post("/api/v1/tools/import-mcp", {"url": "http://127.0.0.1:9/mcp"}), 503, "mcp"
    )

    webhook, _ = webhook_create(
        owner=developer, name="h", url="http://127.0.0.1:9/hook", event_types=["workflow.execution.failed"]
    )
    event = event_record(type="workflow.execution.failed", actor=developer, message="boom")
    flag_set(name="webhooks", everyone=False)
    assert webhooks_dispatch_event(event=event) == []
    assert_flag_refused(client.post(f"/api/v1/integration/webhooks/{webhook.pk}/test"), 503, "webhooks")
    flag_set(name="webhooks", everyone=True)
    assert len(webhooks_dispatch_event(event=event)) == 1

    workflow = workflow_create(
        owner=developer,
        name="t",
        definition={"nodes": [{"id": "a", "type": "transform", "config": {"template": "1"}}]},
    )
    _, token, _ = trigger_create(workflow=workflow, actor=developer, name="t", signed=False)
    flag_set(name="triggers", everyone=False)
    assert_flag_refused(
        api_client.post(f"/api/v1/integration/hooks/{token}", {}, format="json"), 503, "triggers"
    )
    flag_set(name="triggers", everyone=True)
    assert api_client.post(f"/api/v1/integration/hooks/{token}", {}, format="json").status_code == 202


# --- the span records the flags (A/B) ----------------------------------------------------------
def test_the_flags_a_request_was_served_under_are_on_its_span(developer, make_user, client_for):
    tool = make_deployed_tool(developer)
    flag_set(name="tool_type.builtin", everyone=None, users=[developer.pk], superusers=False)
    outsider = make_user(Role.ADMIN)
    assert execute(client_for(developer), tool).status_code == 200
    assert execute(client_for(outsider), tool).status_code == 403
    on = Span.objects.filter(**{"kind": "http", "attributes__feature_flags__tool_type.builtin": True})
    off = Span.objects.filter(**{"kind": "http", "attributes__feature_flags__tool_type.builtin": False})
    assert [s.user_id for s in on] == [developer.pk] and [s.user_id for s in off] == [outsider.pk]
    assert on.get().attributes["http.response.status_code"] == 200


# --- the API -----------------------------------------------------------------------------------
def test_list_get_put_and_reset(admin_user, client_for, developer):
    client = client_for(admin_user)
    listed = client.get(FLAGS)
    assert listed.status_code == 200
    names = {f["name"]: f for f in listed.json()}
    assert set(names) == set(FEATURES)
    assert {"registration", "streaming", "background_runs", "mcp", "webhooks", "triggers"} <= set(names)
    assert {"tool_type.builtin", "tool_type.http", "tool_type.agent", "tool_type.workflow"} <= set(names)
    assert names["streaming"]["state"] == "on" and names["streaming"]["stored"] is False

    beta = Group.objects.create(name="beta")
    response = client.put(
        f"{FLAGS}/streaming",
        {
            "everyone": None,
            "percent": 25.5,
            "users": [developer.pk],
            "groups": ["beta"],
            "roles": ["developer"],
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["state"] == "targeted" and body["percent"] == 25.5
    assert (
        body["users"] == [developer.pk] and body["groups"] == [beta.name] and body["roles"] == ["developer"]
    )
    event = ObservabilityEvent.objects.get(type="audit.create", resource_type="system.featureflag")
    assert event.payload["channel"] == "api" and event.actor_id == admin_user.pk
    assert event.payload["changes"]["users"] == [developer.pk]

    response = client.put(f"{FLAGS}/streaming", {"everyone": False}, format="json")
    assert response.json()["state"] == "off" and response.json()["roles"] == ["developer"]  # others kept
    assert ObservabilityEvent.objects.filter(type="audit.update", resource_type="system.featureflag").exists()
    assert client.get(f"{FLAGS}/streaming").json()["everyone"] is False

    response = client.delete(f"{FLAGS}/streaming")
    assert response.status_code == 200 and response.json()["state"] == "on" and not response.json()["stored"]
    assert flag_is_active("streaming", developer)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"percent": 150}, "percent"),
        ({"percent": -1}, "percent"),
        ({"roles": ["superhero"]}, "roles[0]"),
        ({"users": [999999]}, "users"),
        ({"groups": ["no-such-group"]}, "groups"),
        ({"everyone": "sometimes"}, "everyone"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_flag_changes_are_a_400_naming_the_field(admin_user, client_for, body, field):
    response = client_for(admin_user).put(f"{FLAGS}/streaming", body, format="json")
    assert_problem(response, 400, field)
    assert flag_is_active("streaming")


def test_unknown_flags_are_404_and_the_api_is_admin_only(admin_user, developer, plain_user, client_for):
    assert_problem(client_for(admin_user).get(f"{FLAGS}/no.such.flag"), 404)
    assert_problem(
        client_for(admin_user).put(f"{FLAGS}/no.such.flag", {"everyone": False}, format="json"), 404
    )
    for user in (developer, plain_user):
        client = client_for(user)
        assert_problem(client.get(FLAGS), 403)
        assert_problem(client.put(f"{FLAGS}/streaming", {"everyone": False}, format="json"), 403)
        assert_problem(client.delete(f"{FLAGS}/streaming"), 403)
    assert flag_is_active("streaming")


def test_a_first_change_that_sets_rules_makes_the_flag_targeted(admin_user, client_for, developer):
    client = client_for(admin_user)
    response = client.put(f"{FLAGS}/webhooks", {"roles": ["admin"]}, format="json")
    assert response.json()["state"] == "targeted" and response.json()["everyone"] is None
    assert not flag_is_active("webhooks", developer) and flag_is_active("webhooks", admin_user)
    response = client.put(f"{FLAGS}/triggers", {"note": "just a note"}, format="json")
    assert response.json()["state"] == "on"


def test_workflow_event_streams_and_the_drf_permission_follow_the_streaming_flag(developer, client_for):
    from rest_framework.response import Response
    from rest_framework.test import APIRequestFactory, force_authenticate
    from rest_framework.views import APIView

    from agentmesh.core.features import feature_permission
    from workflows.services import workflow_create

    client = client_for(developer)
    workflow = workflow_create(
        owner=developer,
        name="w",
        definition={"nodes": [{"id": "a", "type": "transform", "config": {"template": "1"}}]},
    )
    execution = client.post(
        f"/api/v1/workflows/{workflow.pk}/execute", {"mode": "sync"}, format="json"
    ).json()
    flag_set(name="streaming", everyone=False)
    events = client.get(
        f"/api/v1/workflows/executions/{execution['id']}/events", HTTP_ACCEPT="text/event-stream"
    )
    assert events.status_code == 503 and "'streaming'" in events.json()["detail"]

    class Streamed(APIView):
        permission_classes = [feature_permission("streaming")]

        def get(self, request):
            return Response({"ok": True})

    request = APIRequestFactory().get("/x")
    force_authenticate(request, developer)
    assert Streamed.as_view()(request).status_code == 503
    flag_set(name="streaming", everyone=None, users=[developer.pk])
    request = APIRequestFactory().get("/x")
    force_authenticate(request, developer)
    assert Streamed.as_view()(request).status_code == 200
