"""Integration flows: agent from template, agent + workflow deploy, batch creates, status."""

import pytest
from django.test import override_settings

from agents.models import Agent, AgentStatus
from observability.models import ObservabilityEvent
from templates_app.services import template_create
from tests.agents.factories import make_agent, make_model
from tests.api_base import assert_problem
from tests.templates_app.conftest import BUNDLE_PARAMETERS, agent_bundle
from workflows.models import Workflow
from workflows.services import workflow_create

pytestmark = pytest.mark.django_db

BASE = "/api/v1/integration"


def agent_template(owner, model_name: str):
    return template_create(
        owner=owner,
        name="Helper template",
        kind="agent",
        body={
            "resources": [
                {
                    "key": "helper",
                    "kind": "agent",
                    "spec": {
                        "name": "{{ params.prefix }} helper",
                        "model": {"$ref": "model", "name": model_name},
                        "system_prompt": "You help with {{ params.topic }}.",
                    },
                }
            ]
        },
        parameters={
            "type": "object",
            "properties": {
                "prefix": {"type": "string", "default": "demo"},
                "topic": {"type": "string", "examples": ["maths"]},
            },
            "required": ["topic"],
        },
    )


def flow_definition(agent_id="$agent") -> dict:
    return {
        "nodes": [
            {"id": "ask", "type": "agent", "config": {"agent_id": agent_id, "input": "{{ inputs.q }}"}}
        ],
        "edges": [],
    }


def audit_creates(obj) -> list:
    return list(
        ObservabilityEvent.objects.filter(
            type="audit.create", resource_id=str(obj.pk), resource_type=obj._meta.label_lower
        )
    )


def rows_state() -> tuple:
    return (
        Agent.objects.count(),
        Workflow.objects.count(),
        sorted((str(a.pk), a.updated_at, a.status) for a in Agent.objects.all()),
        sorted((str(w.pk), w.updated_at, w.version) for w in Workflow.objects.all()),
    )


# --- agent from template -------------------------------------------------------------------------
def test_agent_from_agent_template_with_params_name_and_deploy(client_for, developer):
    make_model(developer, name="echo-tpl")
    template = agent_template(developer, "echo-tpl")
    response = client_for(developer).post(
        f"{BASE}/agent-from-template",
        {"template": str(template.pk), "params": {"topic": "maths"}, "deploy": True},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    agent = Agent.objects.get(pk=body["agent"]["id"])
    assert agent.name == "demo helper" and agent.system_prompt == "You help with maths."
    assert agent.status == AgentStatus.DEPLOYED and body["agent"]["status"] == "deployed"
    assert body["deploy"]["version"] == 1 and all(c["ok"] for c in body["deploy"]["checks"])
    assert audit_creates(agent)

    named = client_for(developer).post(
        f"{BASE}/agent-from-template",
        {"template": str(template.pk), "params": {"topic": "poems"}, "name": "Poet"},
        format="json",
    )
    assert named.status_code == 201, named.json()
    assert named.json()["agent"]["name"] == "Poet" and named.json()["deploy"] is None
    assert named.json()["agent"]["status"] != "deployed"


def test_agent_from_template_refuses_other_kinds_missing_params_and_failed_deploy(client_for, developer):
    make_model(developer, name="echo-shared")
    bundle = template_create(
        owner=developer, name="Bundle", kind="bundle", body=agent_bundle(), parameters=BUNDLE_PARAMETERS
    )
    client = client_for(developer)
    response = client.post(
        f"{BASE}/agent-from-template", {"template": str(bundle.pk), "params": {"topic": "x"}}, format="json"
    )
    assert_problem(response, 400, "template")
    assert not Agent.objects.exists()

    make_model(developer, name="echo-off", is_active=False)
    template = agent_template(developer, "echo-off")
    missing = client.post(f"{BASE}/agent-from-template", {"template": str(template.pk)}, format="json")
    assert_problem(missing, 400)
    failed = client.post(
        f"{BASE}/agent-from-template",
        {"template": str(template.pk), "params": {"topic": "x"}, "deploy": True},
        format="json",
    )
    body = assert_problem(failed, 400, "checks.model")
    assert any(c["name"] == "model" and not c["ok"] for c in body["checks"])
    assert not Agent.objects.exists()


def test_agent_from_another_users_template_is_404(client_for, developer, other_developer):
    make_model(other_developer, name="echo-private")
    template = agent_template(other_developer, "echo-private")
    response = client_for(developer).post(
        f"{BASE}/agent-from-template", {"template": str(template.pk), "params": {"topic": "x"}}, format="json"
    )
    assert_problem(response, 404)


# --- deploy agent + workflow ---------------------------------------------------------------------
def test_deploy_agent_workflow_inline_creates_deploys_and_pins(client_for, developer):
    model = make_model(developer)
    response = client_for(developer).post(
        f"{BASE}/deploy-agent-workflow",
        {
            "agent": {"name": "helper", "model": str(model.pk), "system_prompt": "Help."},
            "workflow": {"name": "ask flow", "definition": flow_definition()},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    agent = Agent.objects.get(pk=body["agent"]["id"])
    workflow = Workflow.objects.get(pk=body["workflow"]["id"])
    assert agent.status == AgentStatus.DEPLOYED and body["deploy"]["version"] == 1
    assert workflow.definition["nodes"][0]["config"]["agent_id"] == str(agent.pk)
    assert body["created"] == {"agent": True, "workflow": True}
    assert audit_creates(agent) and audit_creates(workflow)


def test_deploy_agent_workflow_by_id_updates_and_repins(client_for, developer):
    agent = make_agent(developer, system_prompt="Help.")
    old = make_agent(developer, system_prompt="Old.")
    workflow = workflow_create(
        owner=developer, actor=developer, name="flow", definition=flow_definition(str(old.pk))
    )
    response = client_for(developer).post(
        f"{BASE}/deploy-agent-workflow",
        {"agent": {"id": str(agent.pk), "description": "updated"}, "workflow": str(workflow.pk)},
        format="json",
    )
    assert response.status_code == 200, response.json()
    agent.refresh_from_db()
    workflow.refresh_from_db()
    assert agent.description == "updated" and agent.status == AgentStatus.DEPLOYED
    assert workflow.version == 2 and workflow.definition["nodes"][0]["config"]["agent_id"] == str(agent.pk)
    assert response.json()["created"] == {"agent": False, "workflow": False}


def test_failed_deploy_check_changes_nothing_and_answers_the_report(client_for, developer):
    inactive = make_model(developer, is_active=False)
    agent = make_agent(developer, system_prompt="Help.")
    workflow = workflow_create(
        owner=developer, actor=developer, name="flow", definition=flow_definition(str(agent.pk))
    )
    before = rows_state()
    client = client_for(developer)
    # update an existing agent onto an inactive model: the update is rolled back too
    by_id = client.post(
        f"{BASE}/deploy-agent-workflow",
        {"agent": {"id": str(agent.pk), "model": str(inactive.pk)}, "workflow": str(workflow.pk)},
        format="json",
    )
    body = assert_problem(by_id, 400, "checks.model")
    assert {c["name"] for c in body["checks"]} >= {"model", "tools", "system_prompt"}
    inline = client.post(
        f"{BASE}/deploy-agent-workflow",
        {
            "agent": {"name": "new", "model": str(inactive.pk), "system_prompt": "Help."},
            "workflow": {"name": "new flow", "definition": flow_definition()},
        },
        format="json",
    )
    assert_problem(inline, 400, "checks.model")
    assert rows_state() == before
    agent.refresh_from_db()
    assert agent.model_id != inactive.pk


def test_deploy_agent_workflow_validates_inline_objects_and_refuses_foreign_ids(
    client_for, developer, other_developer
):
    model = make_model(developer)
    client = client_for(developer)
    invalid = client.post(
        f"{BASE}/deploy-agent-workflow",
        {
            "agent": {"model": str(model.pk), "bogus": 1},
            "workflow": {"name": "f", "definition": flow_definition()},
        },
        format="json",
    )
    assert_problem(invalid, 400, "agent.bogus")
    foreign = make_agent(other_developer)
    response = client.post(
        f"{BASE}/deploy-agent-workflow",
        {"agent": str(foreign.pk), "workflow": {"name": "f", "definition": flow_definition()}},
        format="json",
    )
    assert_problem(response, 404)
    assert not Workflow.objects.exists()


# --- batch ---------------------------------------------------------------------------------------
def test_batch_atomic_bad_last_item_writes_nothing(client_for, developer):
    model = make_model(developer)
    items = [{"name": f"a{i}", "model": str(model.pk)} for i in range(3)] + [{"model": str(model.pk)}]
    before = Agent.objects.count()
    response = client_for(developer).post(
        f"{BASE}/batch/agents", {"items": items, "atomic": True}, format="json"
    )
    body = assert_problem(response, 400, "items[3].name")
    assert all(e["field"].startswith("items[3]") for e in body["errors"])
    assert Agent.objects.count() == before

    ok = client_for(developer).post(
        f"{BASE}/batch/agents", {"items": items[:3], "atomic": True}, format="json"
    )
    assert ok.status_code == 201, ok.json()
    assert ok.json()["created"] == 3
    for result in ok.json()["results"]:
        assert audit_creates(Agent.objects.get(pk=result["id"]))


def test_batch_207_reports_each_item(client_for, developer):
    agent = make_agent(developer)
    items = [
        {"name": "w1", "definition": flow_definition(str(agent.pk))},
        {"name": "w2", "definition": {"nodes": []}},
        "not an object",
        {"name": "w1", "definition": flow_definition(str(agent.pk))},
    ]
    response = client_for(developer).post(f"{BASE}/batch/workflows", {"items": items}, format="json")
    assert response.status_code == 207, response.json()
    body = response.json()
    assert body["created"] == 1 and body["failed"] == 3
    assert [r["status"] for r in body["results"]] == [201, 400, 400, 400]
    assert body["results"][3]["errors"][0]["field"] == "items[3].name"
    workflow = Workflow.objects.get(pk=body["results"][0]["id"])
    assert audit_creates(workflow)
    assert Workflow.objects.count() == 1


@override_settings(INTEGRATION_BATCH_MAX_ITEMS=2)
def test_batch_over_the_maximum_is_400(client_for, developer):
    model = make_model(developer)
    items = [{"name": f"a{i}", "model": str(model.pk)} for i in range(3)]
    response = client_for(developer).post(f"{BASE}/batch/agents", {"items": items}, format="json")
    assert_problem(response, 400, "items")
    assert not Agent.objects.filter(owner=developer).exclude(pk__in=[]).filter(name__startswith="a").exists()


def test_plain_user_may_not_batch_create(client_for, plain_user):
    for kind in ("agents", "workflows"):
        response = client_for(plain_user).post(
            f"{BASE}/batch/{kind}", {"items": [{"name": "x"}]}, format="json"
        )
        assert_problem(response, 403)
    inline = client_for(plain_user).post(
        f"{BASE}/deploy-agent-workflow",
        {"agent": {"name": "a"}, "workflow": {"name": "f", "definition": flow_definition()}},
        format="json",
    )
    assert_problem(inline, 403)


# --- status --------------------------------------------------------------------------------------
def test_status_lists_the_registered_sections(client_for, developer):
    from integration.status import register_status_section, status_sections

    model = make_model(developer)
    created = client_for(developer).post(
        f"{BASE}/batch/agents", {"items": [{"name": "a", "model": str(model.pk)}]}, format="json"
    )
    assert created.status_code == 207, created.json()
    saved = status_sections()
    register_status_section("broken", lambda user: 1 / 0)
    try:
        response = client_for(developer).get(f"{BASE}/status")
    finally:
        import integration.status as status_module

        status_module._SECTIONS.clear()
        status_module._SECTIONS.update(saved)
    assert response.status_code == 200, response.json()
    sections = response.json()["sections"]
    assert sections["flows"]["batch_max_items"] == 100
    assert sections["flows"]["created_24h"]["agents"] == 1
    assert sections["broken"] == {"error": "ZeroDivisionError"}


def test_status_sections_of_webhooks_connections_and_jobs_show_only_what_the_user_may_see(
    client_for, developer, other_developer, admin_user
):
    from django.utils import timezone

    from integration.models import (
        ApiConnection,
        DeliveryStatus,
        IntegrationJob,
        JobKind,
        Webhook,
        WebhookDelivery,
    )

    hook = Webhook.objects.create(
        owner=developer, name="h", url="https://hooks.example.com/in", event_types=["alert.fired"]
    )
    Webhook.objects.create(
        owner=developer, name="off", url="https://hooks.example.com/off", event_types=[], active=False
    )
    for status in (DeliveryStatus.SUCCEEDED, DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED):
        WebhookDelivery.objects.create(
            webhook=hook,
            message_id=f"msg_{status}_{WebhookDelivery.objects.count()}",
            event_type="alert.fired",
            payload={},
            status=status,
            attempted_at=timezone.now(),
        )
    ApiConnection.objects.create(
        owner=developer, name="crm", base_url="https://crm.example.com", last_check_ok=True,
        last_check_at=timezone.now(),
    )  # fmt: skip
    ApiConnection.objects.create(owner=other_developer, name="theirs", base_url="https://x.example.com")
    IntegrationJob.objects.create(kind=JobKind.SYNC_MASTER_DATA, owner=developer)
    IntegrationJob.objects.create(kind=JobKind.SYNC_MASTER_DATA, owner=other_developer)

    sections = client_for(developer).get(f"{BASE}/status").json()["sections"]
    assert sections["webhooks"]["active"] == 1 and sections["webhooks"]["disabled"] == 1
    assert sections["webhooks"]["attempts_24h"] == 3
    assert sections["webhooks"]["success_rate_24h"] == pytest.approx(2 / 3)
    assert sections["connections"]["total"] == 1 and sections["connections"]["healthy"] == 1
    assert [item["name"] for item in sections["connections"]["items"]] == ["crm"]
    assert len(sections["jobs"]["recent"]) == 1

    theirs = client_for(other_developer).get(f"{BASE}/status").json()["sections"]
    assert theirs["webhooks"]["active"] == 0 and theirs["webhooks"]["success_rate_24h"] is None
    assert [item["name"] for item in theirs["connections"]["items"]] == ["theirs"]

    everything = client_for(admin_user).get(f"{BASE}/status").json()["sections"]
    assert everything["connections"]["total"] == 2 and len(everything["jobs"]["recent"]) == 2
