"""The engine, driven in process (eager tasks): node types, branching, joins, map, loops,
retries, timeouts, approval, cancel, retry from failure, legal transitions, the reaper."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from observability.models import Span
from tests.workflows.conftest import linear, steps_of, transform
from tests.workflows.handlers import CALLS
from workflows.engine import scheduler
from workflows.models import ExecutionStatus, StepExecution, StepStatus, WorkflowExecution

pytestmark = pytest.mark.django_db


def flaky(node_id, fail_times=0, **extra):
    return {"id": node_id, "type": "test_flaky", "config": {"fail_times": fail_times}, **extra}


def approval(node_id="ok", **config):
    return {"id": node_id, "type": "approval", "config": config}


# --- basics -----------------------------------------------------------------------------------
def test_linear_run_passes_outputs_along_and_maps_the_result(make_workflow, engine):
    workflow = make_workflow(
        linear(
            transform("double", {"x": "{{ inputs.n * 2 }}", "label": "n={{ inputs.n }}"}),
            transform("inc", "{{ steps.double.output.x + 1 }}"),
            outputs={"result": "{{ steps.inc.output }}", "label": "{{ steps.double.output.label }}"},
        )
    )
    execution = engine.execute(workflow, {"n": 3})
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert execution.outputs == {"result": 7, "label": "n=3"}
    steps = steps_of(execution)
    assert steps["double"].output == {"x": 6, "label": "n=3"}
    assert all(
        s.status == StepStatus.SUCCEEDED and s.finished_at and s.duration_ms is not None
        for s in steps.values()
    )
    assert execution.version.version == 1 and execution.duration_ms is not None


def test_output_nodes_form_the_result_without_a_mapping(make_workflow, engine):
    workflow = make_workflow(
        linear(
            transform("a", [1, 2]),
            {"id": "out", "type": "output", "config": {"value": "{{ steps.a.output | length }}"}},
        )
    )
    assert engine.execute(workflow).outputs == {"out": 2}


def test_transform_with_jmespath(make_workflow, engine):
    workflow = make_workflow(
        {
            "nodes": [
                {
                    "id": "q",
                    "type": "transform",
                    "config": {"jmespath": "items[?price > `2`].name", "source": "{{ inputs }}"},
                },
                {"id": "all", "type": "transform", "config": {"jmespath": "inputs.items | length(@)"}},
            ],
            "edges": [{"source": "q", "target": "all"}],
            "outputs": {"names": "{{ steps.q.output }}", "count": "{{ steps.all.output }}"},
        }
    )
    items = [{"name": "a", "price": 1}, {"name": "b", "price": 3}, {"name": "c", "price": 5}]
    assert engine.execute(workflow, {"items": items}).outputs == {"names": ["b", "c"], "count": 3}


def test_execution_and_steps_are_traced(make_workflow, engine):
    execution = engine.execute(make_workflow(linear(transform("a", 1), transform("b", 2))))
    assert execution.trace_id and execution.span_id
    spans = Span.objects.filter(trace_id=execution.trace_id)
    root = spans.get(span_id=execution.span_id)
    assert root.kind == "workflow" and root.status == "ok" and root.duration_ms is not None
    steps = spans.filter(kind="step")
    assert steps.count() == 2 and {s.parent_span_id for s in steps} == {execution.span_id}


# --- branching and joins ----------------------------------------------------------------------
def branching():
    return {
        "nodes": [
            {
                "id": "check",
                "type": "condition",
                "config": {
                    "branches": [
                        {"label": "big", "when": "{{ inputs.n > 100 }}"},
                        {"label": "medium", "when": "{{ inputs.n > 10 }}"},
                    ],
                    "default": "small",
                },
            },
            transform("big", "big"),
            transform("medium", "medium"),
            transform("small", "small"),
            transform(
                "join", "{{ [steps.big.output, steps.medium.output, steps.small.output] | select | list }}"
            ),
        ],
        "edges": [
            {"source": "check", "target": "big", "branch": "big"},
            {"source": "check", "target": "medium", "branch": "medium"},
            {"source": "check", "target": "small", "branch": "small"},
            {"source": "big", "target": "join"},
            {"source": "medium", "target": "join"},
            {"source": "small", "target": "join"},
        ],
        "outputs": {"taken": "{{ steps.join.output }}"},
    }


@pytest.mark.parametrize(("n", "taken"), [(500, "big"), (50, "medium"), (5, "small")])
def test_condition_takes_one_branch_and_skips_the_others(make_workflow, engine, n, taken):
    execution = engine.execute(make_workflow(branching()), {"n": n})
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert execution.outputs == {"taken": [taken]}
    steps = steps_of(execution)
    assert steps["check"].output == {"branch": taken}
    for name in ("big", "medium", "small"):
        assert steps[name].status == (StepStatus.SUCCEEDED if name == taken else StepStatus.SKIPPED)
    assert StepExecution.objects.filter(execution=execution, node_id="join").count() == 1


def test_edge_conditions_and_skips_propagate(make_workflow, engine):
    workflow = make_workflow(
        {
            "nodes": [transform("a", "{{ inputs.go }}"), transform("b", "b"), transform("c", "c")],
            "edges": [
                {"source": "a", "target": "b", "condition": "{{ steps.a.output }}"},
                {"source": "b", "target": "c"},
            ],
        }
    )
    off = steps_of(engine.execute(workflow, {"go": False}))
    assert (off["b"].status, off["c"].status) == (StepStatus.SKIPPED, StepStatus.SKIPPED)
    on = steps_of(engine.execute(workflow, {"go": True}))
    assert (on["b"].status, on["c"].status) == (StepStatus.SUCCEEDED, StepStatus.SUCCEEDED)


def test_fan_out_of_50_branches_joins_exactly_once_with_every_output(make_workflow, engine):
    branches = [transform(f"b{i}", i) for i in range(50)]
    join = transform("join", "{{ steps.values() | map(attribute='output') | select('number') | sum }}")
    definition = {
        "nodes": [transform("start", 0), *branches, join],
        "edges": [{"source": "start", "target": b["id"]} for b in branches]
        + [{"source": b["id"], "target": "join"} for b in branches],
        "outputs": {"sum": "{{ steps.join.output }}"},
    }
    execution = engine.execute(make_workflow(definition))
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert execution.outputs == {"sum": sum(range(50))}
    assert StepExecution.objects.filter(execution=execution, node_id="join").count() == 1
    assert execution.steps.count() == 52


# --- map and loop -----------------------------------------------------------------------------
def test_map_keeps_the_order_of_the_items_with_concurrency(make_workflow, engine):
    workflow = make_workflow(
        {
            "nodes": [
                {
                    "id": "each",
                    "type": "map",
                    "config": {
                        "items": "{{ inputs.words }}",
                        "concurrency": 4,
                        "node": {
                            "type": "transform",
                            "config": {"template": "{{ index }}:{{ item | upper }}"},
                        },
                    },
                }
            ],
            "outputs": {"all": "{{ steps.each.output }}"},
        }
    )
    words = [f"w{i}" for i in range(20)]
    execution = engine.execute(workflow, {"words": words})
    assert execution.outputs == {"all": [f"{i}:W{i}" for i in range(20)]}


def test_map_over_a_non_list_fails_the_step_naming_the_type(make_workflow, engine):
    workflow = make_workflow(
        {
            "nodes": [
                {
                    "id": "each",
                    "type": "map",
                    "config": {
                        "items": "{{ inputs.x }}",
                        "node": {"type": "transform", "config": {"template": 1}},
                    },
                }
            ]
        }
    )
    execution = engine.execute(workflow, {"x": 5})
    assert execution.status == ExecutionStatus.FAILED
    assert "items must be a list, not int" in execution.error


def test_loop_repeats_until_its_condition_holds(make_workflow, engine):
    workflow = make_workflow(
        {
            "nodes": [
                {
                    "id": "grow",
                    "type": "loop",
                    "config": {
                        "node": {"type": "transform", "config": {"template": "{{ (loop.output or 1) * 2 }}"}},
                        "until": "{{ loop.output >= inputs.limit }}",
                        "max_iterations": 10,
                    },
                }
            ],
            "outputs": {"value": "{{ steps.grow.output.output }}", "n": "{{ steps.grow.output.iterations }}"},
        }
    )
    assert engine.execute(workflow, {"limit": 20}).outputs == {"value": 32, "n": 5}


def test_loop_is_bounded(make_workflow, engine):
    body = {"type": "transform", "config": {"template": 1}}
    exhausted = {"id": "l", "type": "loop", "config": {"node": body, "until": False, "max_iterations": 3}}
    execution = engine.execute(make_workflow({"nodes": [exhausted]}))
    assert execution.status == ExecutionStatus.FAILED and "did not hold after 3 iterations" in execution.error
    lenient = {**exhausted, "config": {**exhausted["config"], "on_exhausted": "succeed"}}
    execution = engine.execute(make_workflow({"nodes": [lenient]}))
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert steps_of(execution)["l"].output["iterations"] == 3


# --- retries and errors -----------------------------------------------------------------------
def test_retries_create_new_attempts_until_one_succeeds(make_workflow, engine):
    node = flaky("f", fail_times=2, retry={"max_attempts": 3, "backoff": 0})
    execution = engine.execute(make_workflow(linear(node, outputs={"a": "{{ steps.f.output.attempt }}"})))
    assert execution.status == ExecutionStatus.SUCCEEDED and execution.outputs == {"a": 3}
    attempts = list(execution.steps.order_by("attempt").values_list("attempt", "status", "idempotency_key"))
    assert [(a, s) for a, s, _ in attempts] == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    assert len({key for _, _, key in attempts}) == 3
    assert execution.input_tokens == 3 and execution.output_tokens == 4  # the succeeded attempt's usage


def test_retries_are_bounded_and_then_the_run_fails(make_workflow, engine):
    node = flaky("f", fail_times=5, retry={"max_attempts": 2, "backoff": 0})
    execution = engine.execute(make_workflow(linear(node, transform("after", 1))))
    assert execution.status == ExecutionStatus.FAILED
    assert "The step f failed: flaky failure on attempt 2" in execution.error
    assert execution.steps.filter(node_id="f").count() == 2
    assert not execution.steps.filter(node_id="after").exists()


def test_backoff_is_exponential_capped_and_jittered():
    node = {"retry": {"backoff": 2, "max_delay": 10}}
    for attempt, full in [(1, 2), (2, 4), (3, 8), (4, 10), (9, 10)]:
        delays = [scheduler.backoff_seconds(node, attempt) for _ in range(50)]
        assert all(full * 0.5 <= d <= full for d in delays)
        assert len(set(delays)) > 1  # jitter


def test_retry_waits_for_its_backoff(make_workflow, engine):
    node = flaky("f", fail_times=1, retry={"max_attempts": 2, "backoff": 30, "max_delay": 30})
    execution = engine.execute(make_workflow(linear(node)))
    retry = execution.steps.get(attempt=2)
    assert retry.not_before - retry.created_at >= timedelta(seconds=14)


def test_on_error_continue_and_branch(make_workflow, engine):
    cont = make_workflow(
        linear(flaky("f", fail_times=9, on_error="continue"), transform("next", "{{ steps.f.status }}"))
    )
    execution = engine.execute(cont)
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert steps_of(execution)["next"].output == "failed"

    branch = make_workflow(
        {
            "nodes": [
                flaky("f", fail_times=9, on_error="branch"),
                transform("ok", 1),
                transform("recover", "{{ steps.f.error }}"),
            ],
            "edges": [
                {"source": "f", "target": "ok"},
                {"source": "f", "target": "recover", "branch": "error"},
            ],
        }
    )
    steps = steps_of(engine.execute(branch))
    assert steps["ok"].status == StepStatus.SKIPPED
    assert steps["recover"].output == "flaky failure on attempt 1"


def test_a_crashing_handler_fails_the_step_not_the_engine(make_workflow, engine):
    execution = engine.execute(make_workflow(linear({"id": "c", "type": "test_crash"})))
    assert execution.status == ExecutionStatus.FAILED
    step = steps_of(execution)["c"]
    assert step.error_kind == "internal" and "KeyError" in step.error


def test_expression_errors_fail_without_retries(make_workflow, engine):
    node = transform("t", "{{ inputs.nope.deeper }}", retry={"max_attempts": 3, "backoff": 0})
    execution = engine.execute(make_workflow(linear(node)))
    assert execution.status == ExecutionStatus.FAILED
    assert execution.steps.count() == 1 and execution.steps.get().error_kind == "expression"


# --- timeouts -----------------------------------------------------------------------------------
def test_step_timeout(make_workflow, engine):
    node = {"id": "s", "type": "test_sleep", "config": {"seconds": 1.1}, "timeout_seconds": 1}
    execution = engine.execute(make_workflow(linear(node)))
    assert execution.status == ExecutionStatus.FAILED
    step = steps_of(execution)["s"]
    assert step.status == StepStatus.TIMED_OUT and "within 1s" in step.error


def test_run_past_its_deadline_times_out(make_workflow, engine):
    execution = engine.execute(make_workflow(linear(approval(), transform("after", 1), timeout_seconds=60)))
    assert execution.status == ExecutionStatus.WAITING
    assert execution.deadline - execution.started_at == timedelta(seconds=60)
    assert engine.run(scheduler.reap, now=timezone.now() + timedelta(seconds=30))["timed_out"] == 0
    counts = engine.run(scheduler.reap, now=timezone.now() + timedelta(seconds=61))
    assert counts["timed_out"] == 1
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.TIMED_OUT
    assert steps_of(execution)["ok"].status == StepStatus.CANCELLED


# --- waiting: delay, approval -------------------------------------------------------------------
def test_delay_waits_without_a_worker_and_the_reaper_wakes_it(make_workflow, engine):
    workflow = make_workflow(
        linear({"id": "d", "type": "delay", "config": {"seconds": 5}}, transform("after", 1))
    )
    execution = engine.execute(workflow)
    assert execution.status == ExecutionStatus.WAITING
    assert steps_of(execution)["d"].wait_kind == "delay"
    assert engine.run(scheduler.reap)["woken"] == 0  # not yet
    assert engine.run(scheduler.reap, now=timezone.now() + timedelta(seconds=6))["woken"] == 1
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.SUCCEEDED
    instant = make_workflow(linear({"id": "d", "type": "delay", "config": {"seconds": 0}}))
    assert engine.execute(instant).status == ExecutionStatus.SUCCEEDED


def test_approval_approve(make_workflow, engine, developer):
    workflow = make_workflow(
        linear(
            approval(message="Ship {{ inputs.what }}?"), transform("after", "{{ steps.ok.output.approved }}")
        )
    )
    execution = engine.execute(workflow, {"what": "v2"})
    assert execution.status == ExecutionStatus.WAITING
    assert steps_of(execution)["ok"].state == {"message": "Ship v2?"}
    execution = engine.run(
        scheduler.approval_decide, execution=execution, actor=developer, approve=True, comment="go"
    )
    assert execution.status == ExecutionStatus.SUCCEEDED
    steps = steps_of(execution)
    assert steps["ok"].output == {"approved": True, "by": developer.username, "comment": "go"}
    assert steps["after"].output is True


def test_approval_reject_fails_without_retry(make_workflow, engine, developer):
    workflow = make_workflow(linear({**approval(), "retry": {"max_attempts": 3}}, transform("after", 1)))
    execution = engine.execute(workflow)
    execution = engine.run(
        scheduler.approval_decide, execution=execution, actor=developer, approve=False, comment="no"
    )
    assert execution.status == ExecutionStatus.FAILED
    assert f"Rejected by {developer.username}: no" in execution.error
    assert execution.steps.filter(node_id="ok").count() == 1


def test_approval_times_out(make_workflow, engine):
    execution = engine.execute(make_workflow(linear(approval(timeout_seconds=10))))
    counts = engine.run(scheduler.reap, now=timezone.now() + timedelta(seconds=11))
    assert counts["approvals_timed_out"] == 1
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.FAILED
    assert steps_of(execution)["ok"].status == StepStatus.TIMED_OUT


def test_approve_without_a_waiting_approval_is_refused(make_workflow, engine, developer):
    execution = engine.execute(make_workflow(linear(approval())))
    with pytest.raises(scheduler.ServiceValidationError):
        scheduler.approval_decide(execution=execution, actor=developer, approve=True, node_id="other")


# --- cancel and legal transitions ---------------------------------------------------------------
def test_cancel_a_waiting_run_and_terminal_states_never_change(make_workflow, engine, developer):
    execution = engine.execute(make_workflow(linear(approval(), transform("after", 1))))
    execution = engine.run(scheduler.execution_cancel, execution=execution, actor=developer)
    assert execution.status == ExecutionStatus.CANCELLED
    assert steps_of(execution)["ok"].status == StepStatus.CANCELLED
    with pytest.raises(scheduler.IllegalTransition):
        scheduler.execution_cancel(execution=execution, actor=developer)
    with pytest.raises(scheduler.IllegalTransition):
        scheduler.approval_decide(execution=execution, actor=developer, approve=True)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.CANCELLED


@pytest.mark.parametrize(
    ("model", "start", "target", "legal"),
    [
        (WorkflowExecution, "queued", "running", True),
        (WorkflowExecution, "running", "waiting", True),
        (WorkflowExecution, "succeeded", "running", False),
        (WorkflowExecution, "failed", "succeeded", False),
        (WorkflowExecution, "cancelled", "cancelled", False),
        (WorkflowExecution, "queued", "succeeded", False),
        (StepExecution, "queued", "running", True),
        (StepExecution, "running", "queued", True),
        (StepExecution, "succeeded", "failed", False),
        (StepExecution, "skipped", "running", False),
        (StepExecution, "queued", "succeeded", False),
    ],
)
def test_only_legal_transitions(model, start, target, legal):
    obj = model(status=start)
    if legal:
        scheduler.transition(obj, target)
        assert obj.status == target
    else:
        with pytest.raises(scheduler.IllegalTransition):
            scheduler.transition(obj, target)
        assert obj.status == start


def test_a_redelivered_step_that_already_finished_does_nothing(make_workflow, engine):
    CALLS.clear()
    execution = engine.execute(make_workflow(linear(flaky("f"))))
    step = execution.steps.get()
    before = (step.status, step.dispatches, step.finished_at)
    assert engine.run(scheduler.step_run, step.pk) is None
    step.refresh_from_db()
    assert (step.status, step.dispatches, step.finished_at) == before
    assert CALLS["f"] == 1


# --- retry from failure ------------------------------------------------------------------------
def test_retry_reuses_succeeded_steps_and_reruns_from_the_failure(make_workflow, engine, developer):
    CALLS.clear()
    definition = linear(
        flaky("first"), flaky("second", fail_times=1), transform("third", "{{ steps.second.output.attempt }}")
    )
    execution = engine.execute(make_workflow(definition))
    assert execution.status == ExecutionStatus.FAILED
    retry = engine.run(scheduler.execution_retry, execution=execution, actor=developer)
    retry.refresh_from_db()
    assert retry.status == ExecutionStatus.SUCCEEDED and retry.retry_of_id == execution.pk
    steps = steps_of(retry)
    assert steps["first"].state == {"reused_from": str(steps_of(execution)["first"].pk)}
    assert CALLS == {"first": 1, "second": 2}  # first ran once; second ran again
    assert steps["third"].output == 1  # `second` succeeded on its first attempt in the new execution
    with pytest.raises(scheduler.IllegalTransition):
        scheduler.execution_retry(execution=retry, actor=developer)


# --- the reaper --------------------------------------------------------------------------------
def test_reaper_redispatches_a_step_whose_worker_died(make_workflow, developer, engine):
    from workflows import services

    workflow = make_workflow(linear(flaky("f"), transform("after", "{{ steps.f.output.attempt }}")))
    # Started, but its message never ran (no commit): then a worker "claims" it and dies.
    execution, _ = services.workflow_execute(workflow=workflow, user=developer)
    step = execution.steps.get()
    StepExecution.objects.filter(pk=step.pk).update(
        status=StepStatus.RUNNING, dispatches=1, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    counts = engine.run(scheduler.reap)
    assert counts["redispatched"] == 1
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.SUCCEEDED
    step.refresh_from_db()
    assert step.attempt == 1 and step.dispatches == 2  # the same attempt, claimed again


def test_reaper_gives_up_on_a_step_that_keeps_losing_its_worker(make_workflow, developer, engine, settings):
    from workflows import services

    settings.WORKFLOWS_MAX_REDISPATCHES = 2
    execution, _ = services.workflow_execute(workflow=make_workflow(linear(flaky("f"))), user=developer)
    StepExecution.objects.filter(execution=execution).update(
        status=StepStatus.RUNNING, dispatches=3, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert engine.run(scheduler.reap)["lost"] == 1
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.FAILED and "lost its worker" in execution.error


def test_reaper_resends_a_queued_step_whose_message_was_lost(make_workflow, developer, engine, monkeypatch):
    from workflows import services

    execution, _ = services.workflow_execute(
        workflow=make_workflow(linear(flaky("f", timeout_seconds=42))), user=developer
    )
    assert execution.status == ExecutionStatus.RUNNING and execution.steps.get().status == StepStatus.QUEUED
    assert engine.run(scheduler.reap)["resent"] == 0  # too recent to be lost
    StepExecution.objects.filter(execution=execution).update(updated_at=timezone.now() - timedelta(hours=1))
    send, sent = scheduler._send, []
    monkeypatch.setattr(
        scheduler, "_send", lambda task, args, options: sent.append(options) or send(task, args, options)
    )
    assert engine.run(scheduler.reap)["resent"] == 1
    assert sent[0]["soft_time_limit"] < sent[0]["time_limit"] == 42 + settings.WORKFLOWS_LEASE_GRACE_SECONDS
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.SUCCEEDED


@pytest.mark.parametrize("node", ["workflow", "map", "loop"])
def test_reaper_tells_a_waiting_parent_whose_childs_message_was_lost(
    make_workflow, engine, monkeypatch, developer, node
):
    child = make_workflow(linear(approval()), name="child")
    call = {"workflow_id": str(child.pk)}
    if node == "workflow":
        definition = linear({"id": "call", "type": "workflow", "config": call})
    elif node == "loop":
        definition = linear({"id": "call", "type": "loop", "config": {"until": True, "workflow": call}})
    else:
        definition = linear({"id": "call", "type": "map", "config": {"items": [1, 2], "workflow": call}})
    parent = make_workflow(definition, name="parent")
    send = scheduler._send

    def lossy_send(task, args, options):  # the broker loses every "child finished" message
        if not task.name.endswith("child_finished_task"):
            send(task, args, options)

    monkeypatch.setattr(scheduler, "_send", lossy_send)
    execution = engine.execute(parent)
    for minutes in (2, 4)[: 2 if node == "map" else 1]:
        kid = WorkflowExecution.objects.get(workflow=child, status=ExecutionStatus.WAITING)
        engine.run(scheduler.approval_decide, execution=kid, actor=developer, approve=True)
        execution.refresh_from_db()
        assert execution.status == ExecutionStatus.WAITING  # not told
        assert engine.run(scheduler.reap)["children"] == 0  # too recent to be lost
        assert engine.run(scheduler.reap, now=timezone.now() + timedelta(minutes=minutes))["children"] == 1
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert engine.run(scheduler.reap, now=timezone.now() + timedelta(minutes=6))["children"] == 0


# --- start: idempotency, versions, limits -----------------------------------------------------
def test_start_is_idempotent_per_user_and_key(make_workflow, engine, other_developer):
    workflow = make_workflow(linear(transform("a", "{{ inputs.n }}")))
    first = engine.execute(workflow, {"n": 1}, idempotency_key="k1")
    again = engine.execute(workflow, {"n": 2}, idempotency_key="k1")
    assert again.pk == first.pk and again.outputs == first.outputs
    other = engine.execute(workflow, {"n": 3}, idempotency_key="k2")
    assert other.pk != first.pk


def test_execution_pins_its_version(make_workflow, engine, developer):
    from workflows import services

    workflow = make_workflow(linear(transform("a", "v1"), outputs={"v": "{{ steps.a.output }}"}))
    services.workflow_update(
        workflow=workflow,
        actor=developer,
        definition=linear(transform("a", "v2"), outputs={"v": "{{ steps.a.output }}"}),
    )
    workflow.refresh_from_db()
    assert engine.execute(workflow).outputs == {"v": "v2"}
    old = engine.execute(workflow, version=1)
    assert old.outputs == {"v": "v1"} and old.version.version == 1


def test_concurrency_limit_queues_runs_first_in_first_out(make_workflow, engine, developer, settings):
    settings.WORKFLOWS_MAX_RUNNING_PER_WORKFLOW = 1
    workflow = make_workflow(linear(approval()))
    first = engine.execute(workflow)
    second = engine.execute(workflow)
    third = engine.execute(workflow)
    assert (first.status, second.status, third.status) == ("waiting", "queued", "queued")
    engine.run(scheduler.execution_cancel, execution=first, actor=developer)
    second.refresh_from_db()
    third.refresh_from_db()
    assert (second.status, third.status) == ("waiting", "queued")


def test_inputs_are_checked_against_the_schema(make_workflow, developer):
    from workflows import services

    workflow = make_workflow(
        linear(
            transform("a", 1),
            inputs={"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}},
        )
    )
    for inputs, field in [({}, "inputs.city"), ({"city": 5}, "inputs.city")]:
        with pytest.raises(scheduler.ServiceValidationError) as info:
            services.workflow_execute(workflow=workflow, user=developer, inputs=inputs)
        assert field in info.value.detail
    assert not WorkflowExecution.objects.exists()


# --- sub-workflows -----------------------------------------------------------------------------
def test_workflow_node_runs_a_child_execution_and_waits_for_it(make_workflow, engine):
    child = make_workflow(
        linear(transform("sq", "{{ inputs.x * inputs.x }}"), outputs={"y": "{{ steps.sq.output }}"}),
        name="child",
    )
    parent = make_workflow(
        linear(
            {
                "id": "call",
                "type": "workflow",
                "config": {"workflow_id": str(child.pk), "inputs": {"x": "{{ inputs.n }}"}},
            },
            outputs={"y": "{{ steps.call.output.outputs.y }}"},
        ),
        name="parent",
    )
    execution = engine.execute(parent, {"n": 7})
    assert execution.status == ExecutionStatus.SUCCEEDED and execution.outputs == {"y": 49}
    kid = WorkflowExecution.objects.get(workflow=child)
    assert kid.depth == 1 and kid.parent_step.execution_id == execution.pk and kid.status == "succeeded"


def test_cancelling_a_parent_cancels_its_waiting_child(make_workflow, engine, developer):
    child = make_workflow(linear(approval()), name="child")
    parent = make_workflow(
        linear({"id": "call", "type": "workflow", "config": {"workflow_id": str(child.pk)}}), name="parent"
    )
    execution = engine.execute(parent)
    kid = WorkflowExecution.objects.get(workflow=child)
    assert (execution.status, kid.status) == ("waiting", "waiting")
    engine.run(scheduler.execution_cancel, execution=execution, actor=developer)
    kid.refresh_from_db()
    assert kid.status == ExecutionStatus.CANCELLED


def test_child_failure_fails_the_parent_step_and_depth_is_limited(make_workflow, engine, settings):
    child = make_workflow(linear(flaky("f", fail_times=1)), name="child")
    parent = make_workflow(
        linear({"id": "call", "type": "workflow", "config": {"workflow_id": str(child.pk)}}), name="parent"
    )
    execution = engine.execute(parent)
    assert execution.status == ExecutionStatus.FAILED and "The sub-workflow ended failed" in execution.error
    settings.WORKFLOWS_MAX_DEPTH = 0
    execution = engine.execute(parent)
    assert execution.status == ExecutionStatus.FAILED and "at most 0 levels deep" in execution.error


def map_over(child, items="{{ inputs.xs }}", **config) -> dict:
    workflow = {"workflow_id": str(child.pk), "inputs": {"x": "{{ item }}", "i": "{{ index }}"}}
    return {"id": "each", "type": "map", "config": {"items": items, "workflow": workflow, **config}}


def test_map_over_a_sub_workflow_collects_the_children_outputs_in_item_order(make_workflow, engine):
    child = make_workflow(
        linear(
            flaky("f"),
            transform("sq", "{{ inputs.x * inputs.x }}"),
            outputs={"y": "{{ steps.sq.output }}", "i": "{{ inputs.i }}"},
        ),
        name="child",
    )
    parent = make_workflow(
        linear(map_over(child, concurrency=3), outputs={"all": "{{ steps.each.output }}"}), name="parent"
    )
    execution = engine.execute(parent, {"xs": [3, 1, 4, 1, 5]})
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert execution.outputs == {"all": [{"y": y, "i": i} for i, y in enumerate([9, 1, 16, 1, 25])]}
    kids = WorkflowExecution.objects.filter(workflow=child)
    assert kids.count() == 5 and {k.depth for k in kids} == {1}
    assert {k.parent_step_id for k in kids} == {steps_of(execution)["each"].pk}
    assert (execution.input_tokens, execution.output_tokens) == (5 * 3, 5 * 4)  # the children's usage


def test_map_over_a_sub_workflow_of_no_items_succeeds_with_an_empty_list(make_workflow, engine):
    child = make_workflow(linear(transform("a", 1)), name="child")
    parent = make_workflow(linear(map_over(child), outputs={"all": "{{ steps.each.output }}"}), name="parent")
    execution = engine.execute(parent, {"xs": []})
    assert (execution.status, execution.outputs) == (ExecutionStatus.SUCCEEDED, {"all": []})
    assert not WorkflowExecution.objects.filter(workflow=child).exists()


def test_map_over_a_sub_workflow_runs_at_most_concurrency_children_at_once(make_workflow, engine, developer):
    child = make_workflow(
        linear(approval(), outputs={"x": "{{ inputs.x }}", "ok": "{{ steps.ok.output.approved }}"}),
        name="child",
    )
    parent = make_workflow(linear(map_over(child, concurrency=2)), name="parent")
    execution = engine.execute(parent, {"xs": ["a", "b", "c"]})
    kids = lambda: list(WorkflowExecution.objects.filter(workflow=child).order_by("created_at"))  # noqa: E731
    assert execution.status == ExecutionStatus.WAITING and [k.inputs["x"] for k in kids()] == ["a", "b"]
    engine.run(scheduler.approval_decide, execution=kids()[1], actor=developer, approve=True)
    assert [k.inputs["x"] for k in kids()] == ["a", "b", "c"]  # a slot freed: the next item starts
    for kid in kids():
        if kid.status == ExecutionStatus.WAITING:
            engine.run(scheduler.approval_decide, execution=kid, actor=developer, approve=True)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert steps_of(execution)["each"].output == [{"x": x, "ok": True} for x in "abc"]


def test_a_failed_child_fails_the_map_and_cancels_its_running_siblings(make_workflow, engine, developer):
    child = make_workflow(linear(approval()), name="child")
    parent = make_workflow(linear(map_over(child, concurrency=3)), name="parent")
    execution = engine.execute(parent, {"xs": [1, 2, 3]})
    first, second, third = WorkflowExecution.objects.filter(workflow=child).order_by("created_at")
    engine.run(scheduler.approval_decide, execution=second, actor=developer, approve=False)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.FAILED and "item 1 ended failed" in execution.error
    for kid in (first, third):
        kid.refresh_from_db()
        assert kid.status == ExecutionStatus.CANCELLED


def loop_over(child, until, **config) -> dict:
    inputs = {"x": "{{ loop.output.y if loop.output else inputs.start }}", "i": "{{ loop.index }}"}
    workflow = {"workflow_id": str(child.pk), "inputs": inputs}
    return {"id": "again", "type": "loop", "config": {"until": until, "workflow": workflow, **config}}


@pytest.fixture
def doubler(make_workflow):
    return make_workflow(
        linear(
            flaky("f"),
            transform("d", "{{ inputs.x * 2 }}"),
            outputs={"y": "{{ steps.d.output }}", "i": "{{ inputs.i }}"},
        ),
        name="doubler",
    )


def test_loop_over_a_sub_workflow_runs_one_child_per_iteration_until_it_holds(make_workflow, engine, doubler):
    parent = make_workflow(
        linear(loop_over(doubler, "{{ loop.output.y >= 20 }}"), outputs={"r": "{{ steps.again.output }}"}),
        name="parent",
    )
    execution = engine.execute(parent, {"start": 3})
    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    outputs = [{"y": 6, "i": 0}, {"y": 12, "i": 1}, {"y": 24, "i": 2}]
    assert execution.outputs == {"r": {"iterations": 3, "output": outputs[-1], "outputs": outputs}}
    kids = WorkflowExecution.objects.filter(workflow=doubler).order_by("created_at")
    assert [k.inputs["x"] for k in kids] == [3, 6, 12] and {k.depth for k in kids} == {1}
    assert (execution.input_tokens, execution.output_tokens) == (3 * 3, 3 * 4)


@pytest.mark.parametrize(("on_exhausted", "status"), [("fail", "failed"), ("succeed", "succeeded")])
def test_loop_over_a_sub_workflow_is_bounded(make_workflow, engine, doubler, on_exhausted, status):
    node = loop_over(doubler, False, max_iterations=2, on_exhausted=on_exhausted)
    execution = engine.execute(make_workflow(linear(node), name="parent"), {"start": 1})
    assert execution.status == status
    assert WorkflowExecution.objects.filter(workflow=doubler).count() == 2
    if status == "failed":
        assert "did not hold after 2 iterations" in execution.error


def test_a_failed_iteration_fails_the_loop(make_workflow, engine):
    child = make_workflow(linear(approval()), name="child")
    parent = make_workflow(linear(loop_over(child, False)), name="parent")
    execution = engine.execute(parent, {"start": 1})
    kid = WorkflowExecution.objects.get(workflow=child)
    engine.run(scheduler.approval_decide, execution=kid, actor=execution.user, approve=False)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.FAILED and "iteration 0 ended failed" in execution.error
    assert WorkflowExecution.objects.filter(workflow=child).count() == 1


def test_map_over_a_sub_workflow_refuses_bad_child_inputs_naming_the_field(make_workflow, engine):
    child = make_workflow(
        {**linear(transform("a", 1)), "inputs": {"type": "object", "properties": {"x": {"type": "integer"}}}},
        name="child",
    )
    parent = make_workflow(linear(map_over(child)), name="parent")
    execution = engine.execute(parent, {"xs": [1, "two"]})
    assert execution.status == ExecutionStatus.FAILED
    assert "Sub-workflow inputs.x" in steps_of(execution)["each"].error


def test_a_failed_condition_with_on_error_continue_takes_no_branch(make_workflow, engine):
    workflow = make_workflow(
        {
            "nodes": [
                {
                    "id": "check",
                    "type": "condition",
                    "on_error": "continue",
                    "config": {"branches": [{"label": "yes", "when": "{{ inputs.missing.x }}"}]},
                },
                transform("yes", 1),
                transform("no", 2),
                transform("after", "{{ steps.check.status }}"),
            ],
            "edges": [
                {"source": "check", "target": "yes", "branch": "yes"},
                {"source": "check", "target": "no", "branch": "else"},
                {"source": "yes", "target": "after"},
            ],
        }
    )
    steps = steps_of(engine.execute(workflow))
    assert steps["check"].status == StepStatus.FAILED
    assert (steps["yes"].status, steps["no"].status, steps["after"].status) == (
        "skipped",
        "skipped",
        "skipped",
    )


def test_global_limit_queues_across_workflows_and_the_reaper_admits(
    make_workflow, engine, developer, settings
):
    settings.WORKFLOWS_MAX_RUNNING = 1
    first = engine.execute(make_workflow(linear(approval()), name="one"))
    other = make_workflow(linear(transform("a", 1)), name="two")
    second = engine.execute(other)
    assert (first.status, second.status) == ("waiting", "queued")
    settings.WORKFLOWS_MAX_RUNNING = 2  # capacity appears without any run finishing
    assert engine.run(scheduler.reap)["admitted"] == 1
    second.refresh_from_db()
    assert second.status == ExecutionStatus.SUCCEEDED


def test_a_send_that_fails_is_logged_not_raised(caplog, settings):
    """Broker down after commit: the start (or step) still answers; the committed queued step
    is re-sent by the reaper (test_reaper_resends_a_queued_step_whose_message_was_lost)."""
    from agentmesh.celery import app

    class BrokerDown:
        name = "workflows.tasks.run_step"

        def apply_async(self, **kwargs):
            raise ConnectionRefusedError("broker down")

    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        scheduler._send(BrokerDown(), ("step-id",), {})
    finally:
        app.conf.task_always_eager = eager
    assert "the reaper will re-dispatch it" in caplog.text
