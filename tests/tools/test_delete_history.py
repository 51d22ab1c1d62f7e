"""Deleting a tool keeps its executions readable by their callers (and admins), with the
tool's name and version; an agent that had the tool loses it from its editable tool list."""

import pytest

from tests.api_base import assert_problem
from tools import services
from tools.models import ToolExecution

TOOLS = "/api/v1/tools"


@pytest.fixture
def calculator(developer):
    tool = services.tool_create(
        owner=developer, name="calc", type="builtin", config={"function": "calculator"}
    )
    services.tool_validate(tool=tool, actor=developer)
    return services.tool_deploy(tool=tool, actor=developer)


@pytest.mark.django_db
def test_delete_a_tool_with_executions_keeps_them_readable(
    client_for, developer, plain_user, other_developer, admin_user, calculator
):
    owner = client_for(developer)
    owner.post(
        f"{TOOLS}/{calculator.pk}/share", {"users": [plain_user.username], "actions": ["use"]}, format="json"
    )
    user = client_for(plain_user)
    ran = user.post(f"{TOOLS}/{calculator.pk}/execute", {"arguments": {"expression": "6*7"}}, format="json")
    assert ran.status_code == 200 and ran.json()["result"] == {"result": 42}, ran.json()
    execution_id = ran.json()["id"]

    assert owner.delete(f"{TOOLS}/{calculator.pk}").status_code == 204
    body = user.get(f"{TOOLS}/executions/{execution_id}").json()
    assert body["tool"] is None and body["tool_name"] == "calc" and body["tool_version"] == calculator.version
    assert body["arguments"] == {"expression": "6*7"} and body["result"] == {"result": 42}
    assert [e["id"] for e in user.get(f"{TOOLS}/executions").json()["results"]] == [execution_id]
    assert client_for(admin_user).get(f"{TOOLS}/executions/{execution_id}").status_code == 200
    for stranger in (other_developer, developer):
        assert_problem(client_for(stranger).get(f"{TOOLS}/executions/{execution_id}"), 404)
        assert client_for(stranger).get(f"{TOOLS}/executions").json()["results"] == []


@pytest.mark.django_db
def test_delete_is_refused_while_an_execution_is_unfinished(client_for, developer, calculator):
    services.tool_execute_async(tool=calculator, arguments={"expression": "1"}, actor=developer)  # queued
    client = client_for(developer)
    assert_problem(client.delete(f"{TOOLS}/{calculator.pk}"), 409)
    ToolExecution.objects.update(status="succeeded")
    assert client.delete(f"{TOOLS}/{calculator.pk}").status_code == 204
    assert ToolExecution.objects.get().tool_name == "calc"
