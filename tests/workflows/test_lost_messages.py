"""A step whose message was lost (sent, never claimed: the broker restarted empty) is re-sent by
the reaper within about 15 s at the default settings; a step waiting in a long but healthy
queue gets at most one more message per period, in bounded batches, and a duplicate message
is a no-op (the claim is conditional)."""

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from tests.workflows.conftest import linear
from tests.workflows.handlers import CALLS
from workflows import services
from workflows.engine import scheduler
from workflows.models import ExecutionStatus, StepExecution, StepStatus

pytestmark = pytest.mark.django_db


def flaky(node_id):
    return {"id": node_id, "type": "test_flaky", "config": {}}


def _lost(make_workflow, developer, n: int = 1) -> list:
    """`n` runs whose first step was committed queued but whose message never arrived (the
    test's transaction never commits, so the on-commit send does not happen)."""
    workflow = make_workflow(linear(flaky("f")))
    return [services.workflow_execute(workflow=workflow, user=developer)[0] for _ in range(n)]


def test_the_defaults_resend_a_lost_step_within_about_15_seconds():
    reaper = django_settings.CELERY_BEAT_SCHEDULE["workflows-reaper"]["schedule"]
    assert django_settings.WORKFLOWS_REDISPATCH_QUEUED_AFTER_SECONDS + reaper <= 15


def test_a_sent_but_unclaimed_step_is_resent_by_the_reaper_after_the_threshold(
    make_workflow, developer, engine
):
    (execution,) = _lost(make_workflow, developer)
    step = execution.steps.get()
    assert step.status == StepStatus.QUEUED
    after = django_settings.WORKFLOWS_REDISPATCH_QUEUED_AFTER_SECONDS
    assert engine.run(scheduler.reap, now=step.updated_at + timedelta(seconds=after - 1))["resent"] == 0
    assert engine.run(scheduler.reap, now=step.updated_at + timedelta(seconds=after + 1))["resent"] == 1
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert CALLS["f"] == 1


def test_a_step_resent_recently_is_not_resent_again_and_a_pass_is_bounded(
    make_workflow, developer, engine, monkeypatch
):
    monkeypatch.setattr(scheduler, "RESEND_BATCH", 3)
    executions = _lost(make_workflow, developer, n=5)
    sent = []
    monkeypatch.setattr(scheduler, "_send", lambda task, args, options: sent.append(args))
    after = timedelta(seconds=django_settings.WORKFLOWS_REDISPATCH_QUEUED_AFTER_SECONDS)
    now = timezone.now() + after + timedelta(seconds=1)
    assert engine.run(scheduler.reap, now=now)["resent"] == 3  # a bounded batch, oldest first
    assert engine.run(scheduler.reap, now=now + timedelta(seconds=1))["resent"] == 2  # the rest
    # those just re-sent wait another period: a long but healthy queue is not flooded
    assert engine.run(scheduler.reap, now=now + timedelta(seconds=2))["resent"] == 0
    assert engine.run(scheduler.reap, now=now + after + timedelta(seconds=2))["resent"] == 3
    assert len(sent) == 8
    assert {args[0] for args in sent} == {str(e.steps.get().pk) for e in executions}


def test_a_duplicate_message_of_a_step_does_nothing(make_workflow, developer, engine):
    (execution,) = _lost(make_workflow, developer)
    step_id = str(execution.steps.get().pk)
    assert engine.run(scheduler.step_run, step_id) == StepStatus.SUCCEEDED
    # the first message arrives after all (it was merely slow), or a re-send does twice
    assert engine.run(scheduler.step_run, step_id) is None
    assert engine.run(scheduler.step_run, step_id) is None
    assert CALLS["f"] == 1
    step = StepExecution.objects.get(pk=step_id)
    assert (step.status, step.dispatches) == (StepStatus.SUCCEEDED, 1)
