"""Deleting an agent keeps its history: runs (with steps), conversations and messages stay
readable by the user who ran them (and admins), carrying the agent's name and version."""

import pytest

from agents.models import Agent, AgentRun, AgentVersion, Conversation
from agents.runs import run_start
from tests.api_base import assert_problem
from tests.fake_llm import Reply

AGENTS = "/api/v1/agents"
MODELS = "/api/v1/master-data/models"


@pytest.mark.django_db
def test_delete_an_agent_with_runs_keeps_them_readable(
    client_for, developer, plain_user, other_developer, admin_user, llm, deployed_agent, builtin_tool
):
    agent = deployed_agent(tools=[builtin_tool()], name="summarizer")
    owner = client_for(developer)
    owner.post(
        f"{AGENTS}/{agent.pk}/share", {"users": [plain_user.username], "actions": ["use"]}, format="json"
    )
    llm.push(Reply.tool_calls([("calculator", {"expression": "2*3"})]), Reply.text("6"))
    user = client_for(plain_user)
    ran = user.post(f"{AGENTS}/{agent.pk}/interact", {"input": "2*3?"}, format="json")
    assert ran.status_code == 200, ran.json()
    run_id, conversation_id = ran.json()["id"], ran.json()["conversation"]

    response = owner.delete(f"{AGENTS}/{agent.pk}")
    assert response.status_code == 204, response.content
    assert not Agent.objects.filter(pk=agent.pk).exists() and not AgentVersion.objects.exists()

    body = user.get(f"{AGENTS}/runs/{run_id}").json()
    assert body["agent"] is None and body["agent_name"] == "summarizer" and body["version"] == 1
    assert body["status"] == "succeeded" and body["output"] == "6"
    assert [s["kind"] for s in body["steps"]] == ["llm", "tool", "llm"]
    assert [r["id"] for r in user.get(f"{AGENTS}/runs").json()["results"]] == [run_id]
    conversation = user.get(f"{AGENTS}/conversations/{conversation_id}").json()
    assert conversation["agent"] is None
    messages = user.get(f"{AGENTS}/conversations/{conversation_id}/messages").json()["results"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert client_for(admin_user).get(f"{AGENTS}/runs/{run_id}").status_code == 200

    # Nobody else: the agent's former owner no longer owns anything the run hangs on.
    for stranger in (other_developer, developer):
        assert_problem(client_for(stranger).get(f"{AGENTS}/runs/{run_id}"), 404)
        assert run_id not in {r["id"] for r in client_for(stranger).get(f"{AGENTS}/runs").json()["results"]}
        assert_problem(client_for(stranger).get(f"{AGENTS}/conversations/{conversation_id}"), 404)

    # Nothing in the history protects the model config any more.
    assert owner.delete(f"{MODELS}/{agent.model_id}").status_code == 204
    assert user.get(f"{AGENTS}/runs/{run_id}").json()["agent_name"] == "summarizer"


@pytest.mark.django_db
def test_delete_is_refused_while_a_run_is_unfinished(client_for, developer, deployed_agent):
    agent = deployed_agent()
    run, _ = run_start(agent=agent, user=developer, input="hi")  # queued, no worker yet
    client = client_for(developer)
    assert_problem(client.delete(f"{AGENTS}/{agent.pk}"), 409)
    assert client.post(f"{AGENTS}/runs/{run.pk}/cancel").json()["status"] == "cancelled"
    assert client.delete(f"{AGENTS}/{agent.pk}").status_code == 204
    kept = AgentRun.objects.get(pk=run.pk)
    assert kept.agent_id is None and kept.version_id is None
    assert (kept.agent_name, kept.agent_version_number) == ("helper", 1)
    assert Conversation.objects.get(pk=run.conversation_id).agent_id is None


@pytest.mark.django_db
def test_an_agent_tool_of_a_deleted_agent_fails_cleanly(developer, llm, deployed_agent):
    from tools import services as tool_services

    callee = deployed_agent(name="callee")
    tool = tool_services.tool_create(
        owner=developer, name="ask_callee", type="agent", config={"agent_id": str(callee.pk)}
    )
    from agents.services import agent_delete

    agent_delete(agent=callee)
    checks = tool_services.tool_validate(tool=tool, actor=developer)
    assert not all(c.ok for c in checks)
    execution = tool_services.tool_execute(tool=tool, arguments={"input": "hi"}, actor=developer)
    assert execution.status == "failed" and "no longer exists" in execution.error


@pytest.mark.django_db
def test_the_admin_deletes_through_the_same_rule(client, make_user, developer, deployed_agent):
    from agentmesh.accounts.models import Role
    from agents.runs import run_cancel

    client.force_login(make_user(Role.ADMIN, is_staff=True, is_superuser=True))
    agent = deployed_agent()
    run, _ = run_start(agent=agent, user=developer, input="hi")
    url = f"/admin/agents/agent/{agent.pk}/delete/"
    page = client.get(url)
    assert page.status_code == 200 and f"Unfinished run {run.pk}" in page.content.decode()
    assert client.post(url, {"post": "yes"}).status_code == 200  # the refusal page again
    assert Agent.objects.filter(pk=agent.pk).exists()

    run_cancel(run=run)
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert not Agent.objects.filter(pk=agent.pk).exists()
    assert AgentRun.objects.get(pk=run.pk).agent_name == "helper"


@pytest.mark.django_db
def test_the_migration_backfills_names_and_versions(developer, deployed_agent, engine_free_workflow):
    """Rows written before the snapshot fields existed get them from their agent/workflow/tool."""
    import importlib

    from django.apps import apps

    from tools import services as tool_services
    from tools.models import ToolExecution
    from workflows.models import WorkflowExecution

    agent = deployed_agent(name="old-agent")
    run, _ = run_start(agent=agent, user=developer, input="hi")
    tool = tool_services.tool_create(
        owner=developer, name="oldcalc", type="builtin", config={"function": "calculator"}
    )
    tool_execution = tool_services.tool_execute(tool=tool, arguments={"expression": "1"}, actor=developer)
    workflow_execution = engine_free_workflow(developer)
    AgentRun.objects.update(agent_name="", agent_version_number=None)
    ToolExecution.objects.update(tool_name="")
    WorkflowExecution.objects.update(workflow_name="", workflow_version_number=None)

    for app, name in (("agents", "0004"), ("tools", "0003"), ("workflows", "0004")):
        importlib.import_module(f"{app}.migrations.{name}_backfill_history_names").backfill(apps, None)

    run.refresh_from_db()
    tool_execution.refresh_from_db()
    workflow_execution.refresh_from_db()
    assert (run.agent_name, run.agent_version_number) == ("old-agent", 1)
    assert tool_execution.tool_name == "oldcalc"
    assert (workflow_execution.workflow_name, workflow_execution.workflow_version_number) == ("old-wf", 1)


@pytest.fixture
def engine_free_workflow():
    def make(owner):
        from workflows import services

        definition = {"nodes": [{"id": "a", "type": "transform", "config": {"template": "{{ 1 }}"}}]}
        workflow = services.workflow_create(owner=owner, name="old-wf", definition=definition)
        execution, _ = services.workflow_execute(workflow=workflow, user=owner, inputs={})
        return execution

    return make
