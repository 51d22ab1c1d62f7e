"""Deleting a workflow keeps its executions (and their steps) readable by the user who ran
them (and admins), with the workflow's name and version; deleting a sub-workflow or a tool a
definition names fails that step cleanly."""

import pytest

from tests.api_base import assert_problem
from tests.workflows.conftest import linear, transform
from workflows import services
from workflows.models import WorkflowExecution, WorkflowVersion

EXECUTIONS = "/api/v1/workflows/executions"


@pytest.mark.django_db
def test_delete_a_workflow_with_executions_keeps_them_readable(
    client_for, developer, plain_user, other_developer, admin_user, engine
):
    workflow = services.workflow_create(
        owner=developer, name="doubler", definition=linear(transform("a", "{{ inputs.n * 2 }}"))
    )
    workflow = services.workflow_update(
        workflow=workflow, definition=linear(transform("a", "{{ inputs.n * 3 }}"))
    )
    owner = client_for(developer)
    owner.post(
        f"/api/v1/workflows/{workflow.pk}/share",
        {"users": [plain_user.username], "actions": ["use"]},
        format="json",
    )
    execution = engine.execute(workflow, {"n": 2}, user=plain_user)
    assert execution.status == "succeeded"

    assert owner.delete(f"/api/v1/workflows/{workflow.pk}").status_code == 204
    assert not WorkflowVersion.objects.exists()

    user = client_for(plain_user)
    body = user.get(f"{EXECUTIONS}/{execution.pk}").json()
    assert body["workflow"] is None and body["workflow_name"] == "doubler" and body["version"] == 2
    assert body["status"] == "succeeded" and [s["output"] for s in body["steps"]] == [6]
    assert [e["id"] for e in user.get(EXECUTIONS).json()["results"]] == [str(execution.pk)]
    assert user.get(f"{EXECUTIONS}/{execution.pk}/events", HTTP_ACCEPT="text/event-stream").status_code == 200
    assert client_for(admin_user).get(f"{EXECUTIONS}/{execution.pk}").status_code == 200
    # the run ended before the delete: a retry would need the deleted version
    WorkflowExecution.objects.filter(pk=execution.pk).update(status="failed")
    assert_problem(user.post(f"{EXECUTIONS}/{execution.pk}/retry"), 409)

    for stranger in (other_developer, developer):
        assert_problem(client_for(stranger).get(f"{EXECUTIONS}/{execution.pk}"), 404)
        assert client_for(stranger).get(EXECUTIONS).json()["results"] == []
        assert_problem(client_for(stranger).get(f"{EXECUTIONS}/{execution.pk}/events"), 404)


@pytest.mark.django_db
def test_a_deleted_sub_workflow_or_tool_fails_its_step(developer, engine, make_workflow):
    from agents import services as agent_services
    from agents.services import agent_deploy
    from tests.agents.factories import make_agent
    from tools import services as tool_services

    child = make_workflow(linear(transform("x", 1)), name="child")
    tool = tool_services.tool_create(
        owner=developer, name="calc", type="builtin", config={"function": "calculator"}
    )
    tool_services.tool_validate(tool=tool, actor=developer)
    tool_services.tool_deploy(tool=tool, actor=developer)
    calls_child = make_workflow(
        linear({"id": "sub", "type": "workflow", "config": {"workflow_id": str(child.pk)}}), name="parent"
    )
    calls_tool = make_workflow(
        linear(
            {"id": "t", "type": "tool", "config": {"tool_id": str(tool.pk), "arguments": {"expression": "1"}}}
        ),
        name="uses-tool",
    )
    agent = make_agent(developer)
    assert agent_deploy(agent=agent, actor=developer)[0] is not None
    calls_agent = make_workflow(
        linear({"id": "g", "type": "agent", "config": {"agent_id": str(agent.pk), "input": "hi"}}),
        name="asks-agent",
    )
    services.workflow_delete(workflow=child)
    tool_services.tool_delete(tool=tool)
    agent_services.agent_delete(agent=agent)
    for workflow in (calls_child, calls_tool, calls_agent):
        failed = engine.execute(workflow)
        assert failed.status == "failed" and "no longer exists" in failed.error, failed.error
