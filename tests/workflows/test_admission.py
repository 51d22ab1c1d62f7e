"""Admission under a backlog: a finish admits the oldest queued runs of its workflow with a
number of queries that does not depend on the length of the queue, stops at the first full
workflow and at the global limit, lets one admitter at a time work, and a run on an idle
system does no admission work at all."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.workflows.conftest import linear, transform
from workflows.engine import scheduler
from workflows.models import ExecutionStatus, WorkflowExecution

pytestmark = pytest.mark.django_db

APPROVAL = {"id": "ok", "type": "approval", "config": {}}  # a run that stays until decided


def _backlog(workflow, developer, n: int) -> list:
    """`n` queued runs of `workflow`, oldest first (made directly: their starts are not measured)."""
    version = workflow.versions.get(version=workflow.version)
    runs = [
        WorkflowExecution(
            workflow=workflow,
            version=version,
            user=developer,
            workflow_name=workflow.name,
            workflow_version_number=version.version,
            metadata={"queue": "celery"},
        )
        for _ in range(n)
    ]
    WorkflowExecution.objects.bulk_create(runs)
    now = timezone.now()
    for i, run in enumerate(runs):  # distinct times: first in first out is checkable
        WorkflowExecution.objects.filter(pk=run.pk).update(created_at=now + timedelta(milliseconds=i))
    return list(WorkflowExecution.objects.filter(pk__in=[r.pk for r in runs]).order_by("created_at"))


def _admission_queries(developer, make_workflow, engine, settings, queued: int) -> tuple[int, int, list]:
    """A full workflow (2 running) with `queued` runs waiting; one run ends. (queries of the
    admission it triggers, runs admitted, the queue)."""
    settings.WORKFLOWS_MAX_RUNNING_PER_WORKFLOW = 2
    workflow = make_workflow(linear(APPROVAL))
    running = [engine.execute(workflow) for _ in range(2)]
    assert {r.status for r in running} == {ExecutionStatus.WAITING}
    backlog = _backlog(workflow, developer, queued)
    scheduler.execution_cancel(execution=running[0], actor=developer)  # its admit task is not run
    with CaptureQueriesContext(connection) as queries:
        admitted = scheduler.admit_queued(workflow_id=workflow.pk)
    return len(queries), admitted, backlog


def test_one_finish_admits_the_oldest_queued_run_with_queries_independent_of_the_backlog(
    developer, make_workflow, engine, settings
):
    few, admitted, backlog = _admission_queries(developer, make_workflow, engine, settings, queued=5)
    assert admitted == 1
    many, admitted, backlog = _admission_queries(developer, make_workflow, engine, settings, queued=200)
    assert admitted == 1
    assert many == few  # O(runs admitted), not O(queue length)
    assert many <= 40
    statuses = dict(
        WorkflowExecution.objects.filter(pk__in=[r.pk for r in backlog]).values_list("pk", "status")
    )
    assert statuses[backlog[0].pk] == ExecutionStatus.RUNNING  # the oldest, first in first out
    assert sum(s == ExecutionStatus.QUEUED for s in statuses.values()) == 199


def test_admission_into_a_full_workflow_stops_at_once(developer, make_workflow, engine, settings):
    settings.WORKFLOWS_MAX_RUNNING_PER_WORKFLOW = 1
    workflow = make_workflow(linear(APPROVAL))
    engine.execute(workflow)
    _backlog(workflow, developer, 200)
    with CaptureQueriesContext(connection) as queries:
        assert scheduler.admit_queued(workflow_id=workflow.pk) == 0
        assert scheduler.admit_queued() == 0  # the reaper's pass over every workflow too
    assert len(queries) <= 20


def test_a_run_on_an_idle_system_does_no_admission_work(make_workflow, engine, developer, monkeypatch):
    calls = []
    admit = scheduler.admit_queued
    monkeypatch.setattr(scheduler, "admit_queued", lambda *a, **k: calls.append(k) or admit(*a, **k))
    execution = engine.execute(make_workflow(linear(transform("a", 1))))
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert calls == []  # no admit task was sent
    # with a queue, a finish sends one, naming its workflow
    workflow = make_workflow(linear(APPROVAL))
    _backlog(workflow, developer, 1)
    engine.execute(make_workflow(linear(transform("a", 1))))
    assert len(calls) == 1 and calls[0]["workflow_id"]


def test_a_finish_admits_its_own_workflows_queue_first_then_others_waiting_for_the_global_limit(
    make_workflow, engine, developer, settings
):
    settings.WORKFLOWS_MAX_RUNNING, settings.WORKFLOWS_MAX_RUNNING_PER_WORKFLOW = 2, 1
    one, two, three = (make_workflow(linear(APPROVAL), name=n) for n in ("one", "two", "three"))
    a, b = engine.execute(one), engine.execute(two)
    c = engine.execute(two)  # waits for its workflow's limit
    d = engine.execute(three)  # waits for the global limit
    a2 = engine.execute(one)  # waits for both
    assert [r.status for r in (a, b, c, d, a2)] == ["waiting", "waiting", "queued", "queued", "queued"]
    engine.run(scheduler.execution_cancel, execution=a, actor=developer)
    for run in (c, d, a2):
        run.refresh_from_db()
    assert (a2.status, c.status, d.status) == ("waiting", "queued", "queued")  # its own queue first
    engine.run(scheduler.execution_cancel, execution=a2, actor=developer)
    c.refresh_from_db()
    d.refresh_from_db()
    assert (c.status, d.status) == ("queued", "waiting")  # the older c waits for its workflow


def test_a_second_admitter_leaves_at_once_and_the_holder_looks_again(
    make_workflow, engine, developer, settings, monkeypatch
):
    settings.WORKFLOWS_MAX_RUNNING_PER_WORKFLOW = 1
    workflow = make_workflow(linear(APPROVAL))
    running = engine.execute(workflow)
    waiting = _backlog(workflow, developer, 1)[0]
    cache.clear()
    lock = scheduler._admitter_lock
    monkeypatch.setattr(scheduler, "_admitter_lock", lambda workflow_id: False)  # another one holds it
    with CaptureQueriesContext(connection) as queries:
        assert scheduler.admit_queued(workflow_id=workflow.pk) == 0
    assert len(queries) <= 2  # a savepoint: it left at once, leaving word for the holder
    assert cache.get(scheduler._again_key(workflow.pk))
    monkeypatch.setattr(scheduler, "_admitter_lock", lock)

    real, passes = scheduler._admit_batch, []

    def batch(workflow_id, limit):  # the holder: while its first pass runs, a run ends and
        result = real(workflow_id, limit)  # that run's admitter leaves (the lock is held)
        passes.append(result)
        if len(passes) == 1:
            WorkflowExecution.objects.filter(pk=running.pk).update(status=ExecutionStatus.CANCELLED)
            cache.set(scheduler._again_key(workflow_id), 1)
        return result

    monkeypatch.setattr(scheduler, "_admit_batch", batch)
    assert scheduler.admit_queued(workflow_id=workflow.pk) == 1  # its second pass admitted it
    assert passes[0] == (0, False)
    waiting.refresh_from_db()
    assert waiting.status == ExecutionStatus.RUNNING  # admitted (its step is not sent here)
