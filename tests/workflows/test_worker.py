"""Workflows on a real Celery worker process on the configured broker (not eager). The
fan-out, SIGKILL and broker-restart cases are in test_integration_engine.py."""

import pytest

from tests.workflows.conftest import linear, transform
from workflows import services
from workflows.engine import scheduler
from workflows.models import WorkflowExecution

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _finished(execution_id):
    return WorkflowExecution.objects.filter(
        pk=execution_id, status__in=["succeeded", "failed", "timed_out"]
    ).first()


def test_approval_resumes_on_a_real_worker(live_worker, client_for, developer):
    definition = linear(
        {"id": "ok", "type": "approval", "config": {}},
        transform("after", "done"),
        outputs={"r": "{{ steps.after.output }}"},
    )
    workflow = services.workflow_create(owner=developer, name="approve", definition=definition)
    client = client_for(developer)
    execution_id = client.post(f"/api/v1/workflows/{workflow.pk}/execute", {}, format="json").json()["id"]
    live_worker.wait_for(lambda: WorkflowExecution.objects.filter(pk=execution_id, status="waiting").exists())
    assert (
        client.post(f"/api/v1/workflows/executions/{execution_id}/approve", {}, format="json").status_code
        == 200
    )
    execution = live_worker.wait_for(lambda: _finished(execution_id), timeout=30)
    assert execution.status == "succeeded" and execution.outputs == {"r": "done"}


def test_a_run_past_its_deadline_ends_timed_out(live_worker, developer):
    definition = linear(
        {"id": "wait", "type": "delay", "config": {"seconds": 30}}, transform("after", 1), timeout_seconds=2
    )
    workflow = services.workflow_create(owner=developer, name="late", definition=definition)
    live_worker.wait_ready()  # the deadline must not run out while the worker boots
    execution, _ = services.workflow_execute(workflow=workflow, user=developer)
    live_worker.wait_for(lambda: WorkflowExecution.objects.filter(pk=execution.pk, status="waiting").exists())

    def timed_out():
        scheduler.reap()  # what the beat task does every 15 s
        return WorkflowExecution.objects.filter(pk=execution.pk, status="timed_out").first()

    finished = live_worker.wait_for(timed_out, timeout=30, interval=0.5)
    assert finished.error == "The run exceeded its deadline."
    assert set(finished.steps.values_list("status", flat=True)) == {"cancelled"}
