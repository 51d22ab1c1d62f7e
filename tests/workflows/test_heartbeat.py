"""A running step's lease: a heartbeat renews it while the handler runs, so the reaper
re-dispatches a dead worker's step within three beats (not after the node's timeout), leaves a
long step that still beats alone, and still catches a hung handler past its timeout + grace.
Also: concurrent admissions of different workflows cannot overshoot the global limit."""

import contextlib
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from agentmesh.celery import app as celery_app
from tests.live_worker import kill_worker, start_worker
from tests.workflows.conftest import linear
from workflows import services
from workflows.engine import scheduler
from workflows.engine.nodes import Done, NodeHandler, registry
from workflows.models import ExecutionStatus, StepExecution, StepStatus, WorkflowExecution

APPROVAL = {"id": "ok", "type": "approval", "config": {}}


def flaky(node_id, **extra):
    return {"id": node_id, "type": "test_flaky", "config": {}, **extra}


def sleep(node_id, seconds, **extra):
    return {"id": node_id, "type": "test_sleep", "config": {"seconds": seconds}, **extra}


def _running(step, **fields) -> StepExecution:
    """`step` as claimed by a worker (once, unless `fields` say otherwise)."""
    fields = {"status": StepStatus.RUNNING, "dispatches": 1, **fields}
    StepExecution.objects.filter(pk=step.pk).update(**fields)
    step.refresh_from_db()
    return step


def _lease(step):
    return StepExecution.objects.values_list("lease_expires_at", flat=True).get(pk=step.pk)


def _beating(step) -> bool:
    return any(t.name == f"step-heartbeat-{step.pk}" for t in threading.enumerate())


def _wait_for(predicate, timeout: float = 3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


class _LeaseNode(NodeHandler):
    """Answers how long the lease its claim took lasts (seconds after the claim)."""

    type = "test_lease"

    def run(self, ctx):
        row = StepExecution.objects.get(pk=ctx.step.pk)
        return Done((row.lease_expires_at - row.started_at).total_seconds())


registry.register(_LeaseNode())


# --- the claim and the heartbeat ------------------------------------------------------------------
@pytest.mark.django_db
def test_a_claim_holds_for_three_beats_not_for_the_nodes_timeout(make_workflow, engine, settings):
    settings.WORKFLOWS_HEARTBEAT_SECONDS = 7
    workflow = make_workflow(linear({"id": "x", "type": "test_lease", "timeout_seconds": 3600}))
    execution = engine.execute(workflow)
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert execution.steps.get().output == 21.0


@pytest.mark.django_db(transaction=True)  # the heartbeat writes from a thread of its own
def test_the_heartbeat_renews_the_lease_while_the_step_runs_and_stops_after(
    make_workflow, developer, settings
):
    settings.WORKFLOWS_HEARTBEAT_SECONDS = 0.05
    execution, _ = services.workflow_execute(workflow=make_workflow(linear(APPROVAL)), user=developer)
    long_ago = timezone.now() - timedelta(hours=1)
    step = _running(execution.steps.get(), lease_expires_at=long_ago)
    with scheduler._heartbeat(step):
        first = _wait_for(lambda: _lease(step) if _lease(step) > long_ago else None)
        assert first > timezone.now()  # now + 3 beats (0.15 s)
        _wait_for(lambda: _lease(step) > first)  # and again, every beat
        assert _beating(step)
    assert not _beating(step)
    last = _lease(step)
    time.sleep(0.2)  # four beats
    assert _lease(step) == last


@pytest.mark.parametrize(
    "claimed_now",
    [{"dispatches": 2}, {"status": StepStatus.QUEUED}, {"status": StepStatus.SUCCEEDED}],
    ids=["claimed-again", "re-dispatched", "finished"],
)
@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_never_renews_a_claim_it_lost(make_workflow, developer, settings, claimed_now):
    settings.WORKFLOWS_HEARTBEAT_SECONDS = 0.05
    execution, _ = services.workflow_execute(workflow=make_workflow(linear(APPROVAL)), user=developer)
    long_ago = timezone.now() - timedelta(hours=1)
    step = _running(execution.steps.get(), lease_expires_at=long_ago)  # claimed with dispatches 1
    StepExecution.objects.filter(pk=step.pk).update(**claimed_now)
    with scheduler._heartbeat(step):
        assert _beating(step)
        _wait_for(lambda: not _beating(step))  # its first beat found the claim lost: it stopped
    assert _lease(step) == long_ago


# --- the reaper -------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_reaper_redispatches_a_step_whose_heartbeat_stopped_long_before_its_timeout(
    make_workflow, developer, engine
):
    now = timezone.now()
    workflow = make_workflow(linear(flaky("f", timeout_seconds=3600)))
    execution, _ = services.workflow_execute(workflow=workflow, user=developer)
    _running(
        execution.steps.get(),
        started_at=now - timedelta(seconds=5),
        lease_expires_at=now - timedelta(seconds=1),
    )
    assert engine.run(scheduler.reap, now=now)["redispatched"] == 1
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert execution.steps.get().dispatches == 2  # the same attempt, claimed again


@pytest.mark.parametrize(("dispatches", "outcome"), [(1, "redispatched"), (3, "lost")])
@pytest.mark.django_db
def test_reaper_treats_a_step_past_timeout_and_grace_as_lost_though_it_still_beats(
    make_workflow, developer, engine, settings, dispatches, outcome
):
    """A hung handler whose heartbeat thread goes on: Celery's time limit should have ended it."""
    settings.WORKFLOWS_LEASE_GRACE_SECONDS = 30
    settings.WORKFLOWS_MAX_REDISPATCHES = 2
    now = timezone.now()
    execution, _ = services.workflow_execute(
        workflow=make_workflow(linear(flaky("f", timeout_seconds=60))), user=developer
    )
    _running(
        execution.steps.get(),
        dispatches=dispatches,
        started_at=now - timedelta(seconds=91),
        lease_expires_at=now + timedelta(seconds=20),
    )
    counts = engine.run(scheduler.reap, now=now)
    assert (counts["redispatched"], counts["lost"]) == ((1, 0) if outcome == "redispatched" else (0, 1))
    execution.refresh_from_db()
    step = execution.steps.get()
    if outcome == "redispatched":
        assert execution.status == ExecutionStatus.SUCCEEDED and step.dispatches == dispatches + 1
    else:
        assert execution.status == ExecutionStatus.FAILED and "overran its timeout" in execution.error
        assert step.status == StepStatus.TIMED_OUT


@pytest.mark.parametrize(
    ("timeout", "running_for"),
    [(60, 89), (3600, 1000)],
    ids=["inside-timeout-and-grace", "long-step-long-timeout"],
)
@pytest.mark.django_db
def test_reaper_leaves_a_beating_step_inside_its_timeout_alone(
    make_workflow, developer, engine, settings, timeout, running_for
):
    settings.WORKFLOWS_LEASE_GRACE_SECONDS = 30
    now = timezone.now()
    execution, _ = services.workflow_execute(
        workflow=make_workflow(linear(flaky("f", timeout_seconds=timeout))), user=developer
    )
    lease = now + timedelta(seconds=20)
    step = _running(
        execution.steps.get(), started_at=now - timedelta(seconds=running_for), lease_expires_at=lease
    )
    counts = engine.run(scheduler.reap, now=now)
    assert (counts["redispatched"], counts["lost"]) == (0, 0)
    step.refresh_from_db()
    assert (step.status, step.dispatches, step.lease_expires_at) == (StepStatus.RUNNING, 1, lease)


# --- on a real worker ------------------------------------------------------------------------------
@contextlib.contextmanager
def _worker(**env):
    """A real worker (with the test node types) taking the steps of runs started meanwhile."""
    worker = start_worker(include="tests.workflows.handlers", extra_env=env)
    conf = celery_app.conf
    saved = conf.task_always_eager, conf.task_default_queue
    conf.task_always_eager, conf.task_default_queue = False, worker.queue
    try:
        worker.wait_ready()
        yield worker
    finally:
        conf.task_always_eager, conf.task_default_queue = saved
        if worker.process.poll() is None:
            worker.stop()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_on_a_real_worker_a_beating_step_stays_and_a_dead_workers_step_is_redispatched_soon(developer):
    definition = linear(sleep("beats", 1.5, timeout_seconds=600), sleep("dies", 60, timeout_seconds=600))
    workflow = services.workflow_create(owner=developer, name="heartbeat", definition=definition)
    with _worker(WORKFLOWS_HEARTBEAT_SECONDS="0.2") as worker:  # a lease lasts 0.6 s
        execution, _ = services.workflow_execute(workflow=workflow, user=developer)

        def reaped_until_dies_runs():
            counts = scheduler.reap()
            assert (counts["redispatched"], counts["lost"]) == (0, 0)  # `beats` outlives its first lease
            return StepExecution.objects.filter(execution=execution, node_id="dies", status="running").first()

        dies = worker.wait_for(reaped_until_dies_runs, timeout=30, interval=0.1)
        beats = StepExecution.objects.get(execution=execution, node_id="beats")
        assert (beats.status, beats.dispatches) == (StepStatus.SUCCEEDED, 1)
        kill_worker(worker)
        killed = time.monotonic()
        _wait_for(lambda: scheduler.reap()["redispatched"], timeout=10)
    assert time.monotonic() - killed < 5  # three beats, not the node's 600 s timeout
    dies.refresh_from_db()
    assert (dies.status, dies.dispatches) == (StepStatus.QUEUED, 1)  # sent again; no worker is left


# --- admission ------------------------------------------------------------------------------------
@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite serializes writers anyway")
@pytest.mark.django_db(transaction=True)
def test_admissions_of_two_workflows_cannot_both_take_the_last_slot(make_workflow, developer, settings):
    settings.WORKFLOWS_MAX_RUNNING = 0  # both start queued
    first, second = (
        services.workflow_execute(workflow=make_workflow(linear(APPROVAL), name=name), user=developer)[0]
        for name in ("one", "two")
    )
    settings.WORKFLOWS_MAX_RUNNING = 1
    results, pids = {}, {}
    admitted, release = threading.Event(), threading.Event()

    def admit_first():  # admits, and holds its transaction open until released
        try:
            with transaction.atomic():
                results["first"] = scheduler._admit(first.pk)
                admitted.set()
                release.wait(5)
        finally:
            connection.close()

    def admit_second():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pids["second"] = cursor.fetchone()[0]
            results["second"] = scheduler._admit(second.pk)
        finally:
            connection.close()

    def second_waits_for_the_lock() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory' AND NOT granted",
                [pids.get("second", 0)],
            )
            return cursor.fetchone()[0] > 0

    one = threading.Thread(target=admit_first)
    one.start()
    assert admitted.wait(5)
    two = threading.Thread(target=admit_second)
    two.start()
    deadline = time.monotonic() + 5
    waited = False
    while two.is_alive() and not waited and time.monotonic() < deadline:
        waited = second_waits_for_the_lock()
        time.sleep(0.01)
    release.set()
    one.join(5)
    two.join(5)
    assert results == {"first": True, "second": False}
    assert waited  # the second admission counted only after the first committed
    running = WorkflowExecution.objects.filter(pk__in=[first.pk, second.pk]).exclude(status="queued")
    assert list(running.values_list("pk", flat=True)) == [first.pk]
