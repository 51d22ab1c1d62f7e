"""Workflows on real Celery worker processes on the configured broker (not eager)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from agentmesh.celery import app as celery_app
from tests.live_worker import ROOT, LiveWorker, database_url, start_worker
from tests.workflows.conftest import linear, transform
from tools import services as tool_services
from workflows import services
from workflows.engine import scheduler
from workflows.models import StepExecution, WorkflowExecution

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _finished(execution_id):
    return WorkflowExecution.objects.filter(
        pk=execution_id, status__in=["succeeded", "failed", "timed_out"]
    ).first()


def test_fan_out_of_50_joins_exactly_once_on_two_workers(live_worker, client_for, developer):
    branches = [transform(f"b{i}", i) for i in range(50)]
    definition = {
        "nodes": [
            transform("start", 0),
            *branches,
            transform("join", "{{ steps.values() | map(attribute='output') | select('number') | sum }}"),
        ],
        "edges": [{"source": "start", "target": b["id"]} for b in branches]
        + [{"source": b["id"], "target": "join"} for b in branches],
        "outputs": {"sum": "{{ steps.join.output }}"},
    }
    workflow = services.workflow_create(owner=developer, name="fan", definition=definition)
    second = _worker_on(live_worker.queue, {}, name="second")  # two processes share the queue
    try:
        second.wait_for(lambda: "ready" in second.log(), timeout=30)
        response = client_for(developer).post(f"/api/v1/workflows/{workflow.pk}/execute", {}, format="json")
        assert response.status_code == 202
        execution = live_worker.wait_for(lambda: _finished(response.json()["id"]), timeout=120)
    finally:
        second.stop()
    assert execution.status == "succeeded", execution.error
    assert execution.outputs == {"sum": sum(range(50))}
    steps = StepExecution.objects.filter(execution=execution)
    assert steps.filter(node_id="join").count() == 1
    assert set(steps.values_list("dispatches", flat=True)) == {1}  # every step claimed once
    assert len(set(steps.values_list("worker", flat=True))) == 2  # both workers took steps


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
        {"id": "wait", "type": "delay", "config": {"seconds": 30}}, transform("after", 1), timeout_seconds=1
    )
    workflow = services.workflow_create(owner=developer, name="late", definition=definition)
    execution, _ = services.workflow_execute(workflow=workflow, user=developer)
    live_worker.wait_for(lambda: WorkflowExecution.objects.filter(pk=execution.pk, status="waiting").exists())

    def timed_out():
        scheduler.reap()  # what the beat task does every 15 s
        return WorkflowExecution.objects.filter(pk=execution.pk, status="timed_out").first()

    finished = live_worker.wait_for(timed_out, timeout=30, interval=0.5)
    assert finished.error == "The run exceeded its deadline."
    assert set(finished.steps.values_list("status", flat=True)) == {"cancelled"}


def test_a_worker_killed_mid_step_does_not_lose_the_run(developer, fake_api):
    """SIGKILL while a step runs: the reaper re-dispatches the step once its lease expires and
    a new worker finishes the run."""
    tool = tool_services.tool_create(
        owner=developer,
        name="slow",
        type="http",
        config={"method": "GET", "url": fake_api.url + "/slow?seconds=2"},
    )
    tool_services.tool_validate(tool=tool, actor=developer)
    tool = tool_services.tool_deploy(tool=tool, actor=developer)
    definition = linear(
        {"id": "call", "type": "tool", "config": {"tool_id": str(tool.pk)}, "timeout_seconds": 3},
        outputs={"slept": "{{ steps.call.output.slept }}"},
    )
    workflow = services.workflow_create(owner=developer, name="killed", definition=definition)
    env = {"WORKFLOWS_LEASE_GRACE_SECONDS": "1"}
    first = start_worker(extra_env=env)
    eager, queue = celery_app.conf.task_always_eager, celery_app.conf.task_default_queue
    celery_app.conf.task_always_eager, celery_app.conf.task_default_queue = False, first.queue
    second = None
    try:
        execution, _ = services.workflow_execute(workflow=workflow, user=developer)
        first.wait_for(
            lambda: StepExecution.objects.filter(execution=execution, status="running").exists(), timeout=30
        )
        for child in _children(first.process.pid):
            os.kill(child, signal.SIGKILL)  # the pool process running the step
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=10)
        assert StepExecution.objects.get(execution=execution).status == "running"  # orphaned
        second = _worker_on(first.queue, env)  # the restarted worker consumes the same queue
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("django.conf.settings.WORKFLOWS_LEASE_GRACE_SECONDS", 1)

            def recovered():
                scheduler.reap()  # what the beat task does every 15 s
                return _finished(execution.pk)

            finished = second.wait_for(recovered, timeout=60, interval=1)
        assert finished.status == "succeeded", finished.error
        assert finished.outputs == {"slept": 2.0}
        step = StepExecution.objects.get(execution=execution)
        assert step.attempt == 1 and step.dispatches == 2
    finally:
        celery_app.conf.task_always_eager, celery_app.conf.task_default_queue = eager, queue
        if second is not None:
            second.stop()
        if first.process.poll() is None:
            first.stop()


def _worker_on(queue: str, extra_env: dict, name: str = "restarted") -> LiveWorker:
    """A worker process on an existing queue (tests.live_worker names a new queue each time)."""
    log_path = Path(settings.VAR_DIR) / f"{queue}-{name}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "agentmesh.settings.test",
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": celery_app.conf.broker_url,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "AGENTMESH_VAR_DIR": str(settings.VAR_DIR),
        **extra_env,
    }
    cmd = [
        sys.executable, "-m", "celery", "-A", "agentmesh", "worker", "-Q", queue, "-c", "1",
        "--pool", "prefork", "--without-heartbeat", "--without-gossip", "--without-mingle",
        "-n", f"{queue}-{name}@%h", "-l", "INFO",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return LiveWorker(queue, process, log_path)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []
