# ruff: noqa: F811  (the agents fixtures are imported for use here)
"""GET/PUT /system/config: the runtime configuration, its validation and audit, and each key's
effect on the code it claims to control."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from agentmesh.accounts.models import Role
from agentmesh.core.features import SETTINGS, runtime_setting
from observability.models import ObservabilityEvent
from tests.agents.conftest import builtin_tool, deployed_agent, fake_model, fake_openai, llm  # noqa: F401
from tests.api_base import assert_problem
from tests.fake_llm import Reply

pytestmark = pytest.mark.django_db
CONFIG = "/api/v1/system/config"


def put(client, values: dict):
    return client.put(CONFIG, {"values": values}, format="json")


@pytest.fixture
def admin_client(admin_user, client_for):
    return client_for(admin_user)


def test_get_lists_every_key_with_default_type_range_and_description(admin_client):
    response = admin_client.get(CONFIG)
    assert response.status_code == 200, response.json()
    body = response.json()
    keys = {item["key"]: item for item in body["settings"]}
    assert set(keys) == set(SETTINGS)
    for required in (
        "REGISTRATION_OPEN",
        "MAINTENANCE_MODE",
        "AGENTS_DEFAULT_MAX_TURNS",
        "AGENTS_DEFAULT_MAX_TOOL_CALLS",
        "WORKFLOWS_MAX_RUNNING",
        "WORKFLOWS_MAX_RUNNING_PER_WORKFLOW",
        "OBSERVABILITY_RETENTION_EVENTS_DAYS",
        "USER_THROTTLE_RATE",
        "AUTH_THROTTLE_RATE",
    ):
        assert required in keys
    turns = keys["AGENTS_DEFAULT_MAX_TURNS"]
    assert turns["type"] == "int" and turns["min"] == 1 and turns["max"] == 1000
    assert turns["default"] == turns["value"] and turns["overridden"] is False and turns["description"]
    assert keys["MAINTENANCE_MODE"] == {**keys["MAINTENANCE_MODE"], "type": "bool", "value": False}
    effective = body["effective"]
    assert effective["database_vendor"] == "sqlite" or effective["database_vendor"] == "postgresql"
    assert effective["time_zone"] == "UTC" and effective["log_level"]
    assert effective["run_mode"] in ("embedded", "production") and effective["broker"]


def test_effective_settings_show_no_secret_and_no_url_with_a_password(admin_client, settings):
    settings.CELERY_BROKER_URL = "redis://:broker-pass-123@10.0.0.5:6379/3"
    settings.SECRET_KEY = "a-very-secret-key-for-this-test-0123456789"
    text = admin_client.get(CONFIG).content.decode()
    body = json.loads(text)
    assert body["effective"]["broker"] == "redis" and body["effective"]["run_mode"] == "production"
    for secret in ("broker-pass-123", "10.0.0.5", settings.SECRET_KEY, *settings.FERNET_KEYS):
        assert secret not in text
    assert "://" not in text


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.USER])
def test_config_is_admin_only(make_user, client_for, role):
    client = client_for(make_user(role))
    assert_problem(client.get(CONFIG), 403)
    assert_problem(put(client, {"MAINTENANCE_MODE": True}), 403)
    assert runtime_setting("MAINTENANCE_MODE") is False


def test_put_changes_resets_and_is_audited(admin_client, admin_user):
    response = put(admin_client, {"AGENTS_DEFAULT_MAX_TURNS": 3, "USER_THROTTLE_RATE": "500/hour"})
    assert response.status_code == 200, response.json()
    keys = {item["key"]: item for item in response.json()["settings"]}
    assert keys["AGENTS_DEFAULT_MAX_TURNS"]["value"] == 3 and keys["AGENTS_DEFAULT_MAX_TURNS"]["overridden"]
    assert runtime_setting("AGENTS_DEFAULT_MAX_TURNS") == 3
    event = ObservabilityEvent.objects.get(type="audit.config_update")
    assert event.actor_id == admin_user.pk and event.payload["channel"] == "api"
    assert event.payload["changes"]["AGENTS_DEFAULT_MAX_TURNS"] == [10, 3]
    assert event.payload["changes"]["USER_THROTTLE_RATE"][1] == "500/hour"

    response = put(admin_client, {"AGENTS_DEFAULT_MAX_TURNS": None})  # back to the default
    keys = {item["key"]: item for item in response.json()["settings"]}
    assert (
        keys["AGENTS_DEFAULT_MAX_TURNS"]["value"] == 10 and not keys["AGENTS_DEFAULT_MAX_TURNS"]["overridden"]
    )
    assert runtime_setting("AGENTS_DEFAULT_MAX_TURNS") == 10
    assert ObservabilityEvent.objects.filter(type="audit.config_update").count() == 2


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"AGENTS_DEFAULT_MAX_TURNS": 0}, "values.AGENTS_DEFAULT_MAX_TURNS"),  # below the range
        ({"AGENTS_DEFAULT_MAX_TURNS": 5000}, "values.AGENTS_DEFAULT_MAX_TURNS"),  # above it
        ({"OBSERVABILITY_RETENTION_EVENTS_DAYS": 0}, "values.OBSERVABILITY_RETENTION_EVENTS_DAYS"),
        ({"AGENTS_DEFAULT_MAX_TURNS": "ten"}, "values.AGENTS_DEFAULT_MAX_TURNS"),  # wrong type
        ({"AGENTS_DEFAULT_MAX_TURNS": True}, "values.AGENTS_DEFAULT_MAX_TURNS"),
        ({"MAINTENANCE_MODE": "yes"}, "values.MAINTENANCE_MODE"),
        ({"USER_THROTTLE_RATE": "fast"}, "values.USER_THROTTLE_RATE"),
        ({"NO_SUCH_KEY": 1}, "values.NO_SUCH_KEY"),
        ({"MAINTENANCE_MESSAGE": "x" * 501}, "values.MAINTENANCE_MESSAGE"),
    ],
)
def test_invalid_values_are_a_400_naming_the_key_and_nothing_changes(admin_client, values, field):
    response = put(admin_client, {"WORKFLOWS_MAX_RUNNING": 7, **values})
    assert_problem(response, 400, field)
    assert runtime_setting("WORKFLOWS_MAX_RUNNING") != 7  # all or nothing
    assert not ObservabilityEvent.objects.filter(type="audit.config_update").exists()


def test_body_shape_is_checked(admin_client):
    assert_problem(admin_client.put(CONFIG, {"values": {}}, format="json"), 400, "values")
    assert_problem(
        admin_client.put(CONFIG, {"MAINTENANCE_MODE": True}, format="json"), 400, "MAINTENANCE_MODE"
    )


# --- each key acts on the code it claims to control ----------------------------------------------
def test_registration_open(admin_client, api_client):
    body = {"username": "newbie", "email": "newbie@example.com", "password": "s3cure-Passw0rd!"}
    put(admin_client, {"REGISTRATION_OPEN": False})
    assert_problem(api_client.post("/api/v1/auth/register", body, format="json"), 404)
    put(admin_client, {"REGISTRATION_OPEN": True})
    assert api_client.post("/api/v1/auth/register", body, format="json").status_code == 201


def test_user_throttle_rate(admin_client, developer, client_for):
    client = client_for(developer)
    assert all(client.get("/api/v1/tools").status_code == 200 for _ in range(3))
    put(admin_client, {"USER_THROTTLE_RATE": "2/minute"})
    statuses = [client.get("/api/v1/tools").status_code for _ in range(3)]
    assert statuses[-1] == 429 and 429 in statuses
    put(admin_client, {"USER_THROTTLE_RATE": "100000/minute"})
    assert client.get("/api/v1/tools").status_code == 200


def test_auth_throttle_rate(admin_client, api_client):
    put(admin_client, {"AUTH_THROTTLE_RATE": "2/minute"})
    body = {"username": "nobody", "password": "wrong-password"}
    statuses = [api_client.post("/api/v1/auth/login", body, format="json").status_code for _ in range(3)]
    assert statuses[:2] != [429, 429] and statuses[2] == 429


def test_retention_days_drive_the_prune(admin_client, developer):
    from observability.services import event_record, retention_prune

    event = event_record(type="test.old", source="tests", actor=developer, message="old")
    ObservabilityEvent.objects.filter(pk=event.pk).update(timestamp=timezone.now() - timedelta(days=10))
    retention_prune()
    assert ObservabilityEvent.objects.filter(pk=event.pk).exists()  # default: 90 days
    put(admin_client, {"OBSERVABILITY_RETENTION_EVENTS_DAYS": 5})
    assert retention_prune()["events"] >= 1
    assert not ObservabilityEvent.objects.filter(pk=event.pk).exists()


def test_agent_default_max_turns_and_tool_calls(
    admin_client, client_for, developer, llm, deployed_agent, builtin_tool
):
    agent = deployed_agent(tools=[builtin_tool()])  # its constraints set no limit
    client = client_for(developer)

    def interact(*replies):
        calls = [("calculator", {"expression": "1+1"}), ("calculator", {"expression": "2+2"})]
        llm.push(Reply.tool_calls(calls), *replies)
        return client.post(f"/api/v1/agents/{agent.pk}/interact", {"input": "go"}, format="json").json()

    assert interact(Reply.text("done"))["stop_reason"] == "completed"
    put(admin_client, {"AGENTS_DEFAULT_MAX_TURNS": 1})
    body = interact()  # the second model call is not made
    assert body["status"] == "incomplete" and body["stop_reason"] == "max_turns", body
    put(admin_client, {"AGENTS_DEFAULT_MAX_TURNS": None, "AGENTS_DEFAULT_MAX_TOOL_CALLS": 1})
    body = interact()  # the second tool call is refused
    assert body["status"] == "incomplete" and body["stop_reason"] == "max_tool_calls", body


def test_workflow_concurrency_limits(admin_client, client_for, developer):
    from workflows.services import workflow_create

    workflow = workflow_create(
        owner=developer,
        name="limited",
        definition={"nodes": [{"id": "ok", "type": "approval", "config": {}}]},  # waits until decided
    )
    client = client_for(developer)

    def start():
        response = client.post(f"/api/v1/workflows/{workflow.pk}/execute", {"inputs": {}}, format="json")
        assert response.status_code == 202, response.json()
        return response.json()["status"]

    assert start() in ("running", "waiting")  # admitted
    put(admin_client, {"WORKFLOWS_MAX_RUNNING_PER_WORKFLOW": 1})
    assert start() == "queued"  # the first one holds the only slot of this workflow
    put(admin_client, {"WORKFLOWS_MAX_RUNNING_PER_WORKFLOW": None, "WORKFLOWS_MAX_RUNNING": 1})
    assert start() == "queued"  # the global limit


def test_the_reload_signal_drops_the_process_copy(settings):
    from constance import config

    from system.signals import runtime_config_reload

    settings.RUNTIME_CONFIG_CACHE_SECONDS = 3600
    assert runtime_setting("AGENTS_DEFAULT_MAX_TURNS") == 10
    config._backend.set("AGENTS_DEFAULT_MAX_TURNS", 4)  # written by another process
    assert runtime_setting("AGENTS_DEFAULT_MAX_TURNS") == 10  # this process's copy
    runtime_config_reload.send(sender=None)
    assert runtime_setting("AGENTS_DEFAULT_MAX_TURNS") == 4


def test_agent_default_token_and_cost_limits_reach_the_budget(admin_client):
    from decimal import Decimal

    from agents.runtime.limits import Budget, LimitReached

    put(admin_client, {"AGENTS_DEFAULT_MAX_OUTPUT_TOKENS": 50, "AGENTS_DEFAULT_MAX_COST_USD_PER_RUN": 0.5})

    def budget(limits):  # as agents.runtime.loop.RunLoop builds it
        return Budget(
            limits=limits,
            default_timeout=runtime_setting("AGENTS_DEFAULT_TIMEOUT_SECONDS"),
            default_max_turns=runtime_setting("AGENTS_DEFAULT_MAX_TURNS"),
            defaults={
                "max_output_tokens": runtime_setting("AGENTS_DEFAULT_MAX_OUTPUT_TOKENS") or None,
                "max_cost_usd_per_run": runtime_setting("AGENTS_DEFAULT_MAX_COST_USD_PER_RUN") or None,
            },
        )

    spent = budget({})
    assert spent.max_tokens_for_next_call(1000) == 50
    spent.record_usage(10, 50, Decimal("0.01"))
    with pytest.raises(LimitReached) as limit:
        spent.check()
    assert limit.value.stop_reason == "token_budget"
    costly = budget({})
    costly.record_usage(10, 1, Decimal("0.6"))
    with pytest.raises(LimitReached) as limit:
        costly.check()
    assert limit.value.stop_reason == "cost_limit"
    own = budget({"max_output_tokens": 500})  # the agent's own constraint wins
    assert own.max_tokens_for_next_call(1000) == 500


def test_trigger_throttle_rate(admin_client, developer, api_client):
    from integration.services.webhooks import trigger_create
    from workflows.services import workflow_create

    workflow = workflow_create(
        owner=developer,
        name="t",
        definition={"nodes": [{"id": "a", "type": "transform", "config": {"template": "1"}}]},
    )
    _, token, _ = trigger_create(workflow=workflow, actor=developer, name="t", signed=False)
    put(admin_client, {"TRIGGER_THROTTLE_RATE": "1/minute"})
    statuses = [
        api_client.post(f"/api/v1/integration/hooks/{token}", {}, format="json").status_code for _ in range(2)
    ]
    assert statuses == [202, 429]
