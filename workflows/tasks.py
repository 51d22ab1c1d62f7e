"""Thin Celery entry points of the workflow engine: ids in, the scheduler does the work.

Every task is idempotent: a redelivered message finds its step finished (or running under a
live lease) and does nothing. Step tasks get their time limits per node from the scheduler.
"""

import contextlib

from celery import shared_task
from celery.exceptions import Reject
from celery.signals import worker_shutting_down

from .engine import scheduler


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def run_step(self, step_id: str) -> str | None:
    """Run one step attempt (a stopping worker still receives messages: it hands them back)."""
    if scheduler.shutting_down():
        raise Reject("the worker is shutting down", requeue=True)
    return scheduler.step_run(step_id, worker=self.request.hostname or "")


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=60, time_limit=90)
def wake_step(step_id: str) -> bool:
    """End a delay step whose time has come (the reaper wakes it if this message is lost)."""
    return scheduler.step_wake(step_id)


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=60, time_limit=90)
def child_finished_task(execution_id: str) -> None:
    """A sub-workflow ended: resume the parent step waiting for it."""
    scheduler.child_finished(execution_id)


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=60, time_limit=90)
def cancel_execution_task(execution_id: str) -> None:
    """Cancel a child execution whose parent ended (already ended: nothing to do)."""
    from .models import WorkflowExecution

    execution = WorkflowExecution.objects.filter(pk=execution_id).first()
    if execution is not None and not execution.finished:
        with contextlib.suppress(scheduler.IllegalTransition):  # it ended meanwhile
            scheduler.execution_cancel(execution=execution)


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=120, time_limit=150)
def admit_queued_task(workflow_id: str = "") -> int:
    """Start queued executions the concurrency limits now allow (oldest first): a run of
    `workflow_id` ended, so its queue comes first."""
    return scheduler.admit_queued(workflow_id=workflow_id or None)


@shared_task(soft_time_limit=120, time_limit=150)
def reap_workflows() -> dict:
    """The beat task: time out overdue runs, re-dispatch lost steps, wake delays, admit queued runs."""
    return scheduler.reap()


@worker_shutting_down.connect
def _worker_shutting_down(**kwargs) -> None:
    """SIGTERM (a deploy, a scale-down): steps already running may finish within
    WORKFLOWS_SHUTDOWN_GRACE_SECONDS, then are handed back; no follow-on step starts here."""
    scheduler.worker_shutting_down()
