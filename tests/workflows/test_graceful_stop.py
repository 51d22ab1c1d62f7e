"""A worker sent SIGTERM (a deploy, a scale-down) stops taking work: a step that ends within
WORKFLOWS_SHUTDOWN_GRACE_SECONDS is recorded, but the step it makes ready goes through the
broker instead of running next on the stopping worker; a step that does not end within the
grace is handed back (claim cleared, message sent again), so another worker runs it at once,
even when the supervisor then SIGKILLs the stopping worker, instead of after its lease (here
3 x 60 s) runs out. Real worker processes."""

import contextlib
import time

import pytest

from agentmesh.celery import app as celery_app
from tests.live_worker import kill_worker, start_worker
from tests.workflows.conftest import linear
from workflows import services
from workflows.models import ExecutionStatus, StepExecution, StepStatus, WorkflowExecution

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LEASE_SECONDS = 3 * 60  # WORKFLOWS_HEARTBEAT_SECONDS=60: a dead worker's step waits this long


def sleep(node_id, seconds):
    return {"id": node_id, "type": "test_sleep", "config": {"seconds": seconds}, "timeout_seconds": 600}


ECHO = {"id": "after", "type": "test_echo", "config": {"value": "done"}}


@contextlib.contextmanager
def _workers(grace: float):
    """Worker `a` (shutdown grace `grace`), and `start` for more on its queue (with the test
    node types); the runs started meanwhile go there."""
    started = []
    queue = None

    def start(name: str, **env):
        worker = start_worker(
            queue,
            name=name,
            include="tests.workflows.handlers",
            extra_env={"WORKFLOWS_HEARTBEAT_SECONDS": "60", **env},
        )
        started.append(worker)
        return worker

    first = start_worker(
        name="a",
        include="tests.workflows.handlers",
        extra_env={"WORKFLOWS_HEARTBEAT_SECONDS": "60", "WORKFLOWS_SHUTDOWN_GRACE_SECONDS": str(grace)},
    )
    started.append(first)
    queue = first.queue
    conf = celery_app.conf
    saved = conf.task_always_eager, conf.task_default_queue
    conf.task_always_eager, conf.task_default_queue = False, queue
    try:
        yield first, start
    finally:
        conf.task_always_eager, conf.task_default_queue = saved
        for worker in started:
            if worker.process.poll() is None:
                worker.stop()


def _running(worker, execution, node_id):
    def check():
        return StepExecution.objects.filter(
            execution=execution, node_id=node_id, status=StepStatus.RUNNING
        ).first()

    return worker.wait_for(check, timeout=60)


def _finished(worker, execution, timeout):
    def check():
        return WorkflowExecution.objects.filter(pk=execution.pk, status=ExecutionStatus.SUCCEEDED).first()

    return worker.wait_for(check, timeout=timeout)


def test_sigterm_mid_step_hands_a_long_step_back_to_another_worker_without_waiting_for_its_lease(developer):
    workflow = services.workflow_create(
        owner=developer, name="graceful-long", definition=linear(sleep("long", 6), ECHO)
    )
    with _workers(grace=1) as (a, start):
        a.wait_ready()
        execution, _ = services.workflow_execute(workflow=workflow, user=developer)
        step = _running(a, execution, "long")
        assert step.worker.startswith(f"{a.queue}-a@")
        a.process.terminate()  # SIGTERM: a warm shutdown; the grace here is 1 s, the step takes 6 s
        stopped = time.monotonic()
        b = start("b")
        time.sleep(3)
        kill_worker(a)  # the supervisor's stop timeout (docker: 10 s) ran out: SIGKILL
        done = _finished(b, execution, timeout=LEASE_SECONDS / 3)
        assert time.monotonic() - stopped < LEASE_SECONDS / 3  # well before the lease ran out
    assert done.status == ExecutionStatus.SUCCEEDED
    long = StepExecution.objects.get(execution=execution, node_id="long")
    assert long.worker.startswith(f"{a.queue}-b@") and long.dispatches == 2  # handed back once
    assert StepExecution.objects.get(execution=execution, node_id="after").worker.startswith(f"{a.queue}-b@")


def test_sigterm_lets_a_short_step_finish_but_its_next_step_goes_to_another_worker(developer):
    workflow = services.workflow_create(
        owner=developer, name="graceful-short", definition=linear(sleep("short", 3), ECHO)
    )
    with _workers(grace=30) as (a, start):
        a.wait_ready()
        execution, _ = services.workflow_execute(workflow=workflow, user=developer)
        _running(a, execution, "short")
        # a grace longer than the step: it ends on `a`; `after` would run next on `a`
        # (WORKFLOWS_WORKER_CONTINUES) if it were not stopping
        a.process.terminate()
        b = start("b")
        a.process.wait(timeout=30)
        done = _finished(b, execution, timeout=60)
    assert done.status == ExecutionStatus.SUCCEEDED
    short = StepExecution.objects.get(execution=execution, node_id="short")
    after = StepExecution.objects.get(execution=execution, node_id="after")
    assert short.worker.startswith(f"{a.queue}-a@") and short.dispatches == 1
    assert after.worker.startswith(f"{a.queue}-b@")


def test_a_stopping_worker_hands_back_a_step_message_it_still_receives(developer, monkeypatch):
    from celery.exceptions import Reject

    from workflows import tasks
    from workflows.engine import scheduler

    workflow = services.workflow_create(owner=developer, name="graceful-reject", definition=linear(ECHO))
    execution, _ = services.workflow_execute(workflow=workflow, user=developer)
    StepExecution.objects.filter(execution=execution).update(status=StepStatus.QUEUED, dispatches=0)
    WorkflowExecution.objects.filter(pk=execution.pk).update(status=ExecutionStatus.RUNNING)
    step = execution.steps.get()
    monkeypatch.setattr(scheduler._SHUTTING_DOWN, "value", 1)
    with pytest.raises(Reject) as info:
        tasks.run_step.run(str(step.pk))
    assert info.value.requeue  # back to the broker for another worker
    step.refresh_from_db()
    assert (step.status, step.dispatches) == (StepStatus.QUEUED, 0)  # not claimed here
