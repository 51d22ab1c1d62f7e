"""Async tool execution through a real Celery worker on the configured broker."""

import pytest

from tools import services
from tools.models import ToolExecution
from tools.tasks import run_tool_execution

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_async_execute_runs_on_a_real_worker(live_worker, client_for, developer, make_http_tool):
    tool = make_http_tool(developer, parameters_schema={
        "type": "object", "properties": {"item_id": {"type": "string"}, "token": {"type": "string"}},
    })  # fmt: skip
    response = client_for(developer).post(
        f"/api/v1/tools/{tool.pk}/execute?async=true",
        {"arguments": {"item_id": "11", "token": "tok-never-in-a-task"}},
        format="json",
    )
    assert response.status_code == 202
    execution_id = response.json()["id"]
    finished = live_worker.wait_for(
        lambda: ToolExecution.objects.filter(pk=execution_id, status="succeeded").first(), timeout=30
    )
    assert finished.result["id"] == "11"
    assert finished.arguments == {"item_id": "11", "token": "***"}
    assert finished.pending_arguments == ""
    assert "tok-never-in-a-task" not in live_worker.log()


def test_redelivered_task_does_nothing_for_a_finished_execution(
    live_worker, developer, make_http_tool, fake_api
):
    tool = make_http_tool(developer)
    execution = services.tool_execute_async(tool=tool, arguments={"item_id": "12"}, actor=developer)
    live_worker.wait_for(lambda: ToolExecution.objects.filter(pk=execution.pk, status="succeeded").exists())
    calls = len(fake_api.requests)
    live_worker.send(run_tool_execution, str(execution.pk))  # a duplicate delivery
    live_worker.send(run_tool_execution, "00000000-0000-0000-0000-000000000000")  # a vanished row
    marker = services.tool_execute_async(tool=tool, arguments={"item_id": "13"}, actor=developer)
    live_worker.wait_for(lambda: ToolExecution.objects.filter(pk=marker.pk, status="succeeded").exists())
    assert len(fake_api.requests) == calls + 1  # only the marker's call
    assert ToolExecution.objects.get(pk=execution.pk).attempt == 1
