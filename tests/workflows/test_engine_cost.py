"""What keeps the engine's cost per step flat: the graph cache per version, the step results a
step or an edge reads (only those its templates reference), a finish that evaluates only the
finished node's successors, the query count per step, and the guarantees that must survive
these shortcuts (a join fires once, a retried execution's reused steps, a lost claim)."""

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from tests.workflows.conftest import linear, steps_of, transform
from tests.workflows.handlers import CALLS
from workflows import services
from workflows.engine import expressions, scheduler
from workflows.engine.graph import Graph
from workflows.engine.nodes import Done, NodeHandler, registry
from workflows.models import ExecutionStatus, StepExecution, StepStatus, WorkflowVersion

pytestmark = pytest.mark.django_db


def flaky(node_id, fail_times=0, **extra):
    return {"id": node_id, "type": "test_flaky", "config": {"fail_times": fail_times}, **extra}


# --- the graph cache ---------------------------------------------------------------------------
def test_the_graph_cache_returns_each_versions_own_graph_and_reads_it_once(make_workflow, developer):
    workflow = make_workflow(linear(transform("a", 1)))
    services.workflow_update(workflow=workflow, actor=developer, definition=linear(transform("b", 2)))
    v1, v2 = WorkflowVersion.objects.filter(workflow=workflow).order_by("version")
    scheduler.version_graph.cache_clear()
    g1 = scheduler.version_graph(v1.pk)
    g2 = scheduler.version_graph(v2.pk)
    assert (g1.order, g1.version) == (["a"], 1)
    assert (g2.order, g2.version) == (["b"], 2)
    with CaptureQueriesContext(connection) as queries:
        assert scheduler.version_graph(v1.pk) is g1
        assert scheduler.version_graph(v2.pk) is g2
    assert len(queries) == 0


# --- what a step reads -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "refs"),
    [
        ("{{ steps.a.output }}", {"a"}),
        ({"x": ["{{ steps['b'].output }} and {{ steps.c.status }}", 3]}, {"b", "c"}),
        ("{{ inputs.steps }} {{ loop.steps }} {{ 'steps' }}", set()),
        ("no template, steps.a", set()),
        ("{{ steps | length }}", None),
        ("{{ steps.values() | list }}", None),  # a dict method: every step
        ("{{ steps[name] }}", None),
        ("{% for s in steps %}{% endfor %}", None),
        ("{% set steps = 1 %}{{ steps }}", None),
    ],
)
def test_step_refs(value, refs):
    found = expressions.step_refs(value)
    assert (found if found is None else set(found)) == refs


def test_node_refs_per_node_type():
    class Reader(NodeHandler):  # reads ctx.variables itself: must get every step
        type = "test_reader"

        def run(self, ctx):
            return Done(sorted(ctx.variables["steps"]))

    registry.register(Reader())
    graph = Graph(
        {
            "nodes": [
                transform("t", "{{ steps.a.output }}"),
                {"id": "j", "type": "transform", "config": {"jmespath": "steps.a.output"}},
                {"id": "js", "type": "transform", "config": {"jmespath": "x", "source": "{{ steps.b }}"}},
                {
                    "id": "m",
                    "type": "map",
                    "config": {"items": "{{ steps.a.output }}", "node": {"type": "transform", "config": {"template": "{{ steps.c.output }}"}}},
                },
                {"id": "r", "type": "test_reader", "config": {}},
                {"id": "d", "type": "delay", "config": {"seconds": 1}},
            ]
        }
    )  # fmt: skip
    assert graph.node_refs("t") == {"a"}
    assert graph.node_refs("j") is None  # a JMESPath query over the whole context
    assert graph.node_refs("js") == {"b"}
    assert graph.node_refs("m") == {"a", "c"}
    assert graph.node_refs("r") is None
    assert graph.node_refs("d") == frozenset()


def test_a_handler_that_reads_the_variables_itself_sees_every_finished_step(make_workflow, engine):
    class Lister(NodeHandler):
        type = "test_lister"

        def run(self, ctx):
            return Done(sorted(ctx.variables["steps"]))

    registry.register(Lister())
    definition = linear(
        transform("a", 1), transform("b", "{{ steps.a.output }}"), {"id": "c", "type": "test_lister"}
    )
    execution = engine.execute(make_workflow(definition))
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert steps_of(execution)["c"].output == ["a", "b"]


# --- SQL per step --------------------------------------------------------------------------------
def echo(node_id: str, value) -> dict:
    return {"id": node_id, "type": "test_echo", "config": {"value": value}}


def _queries_of_a_run(make_workflow, engine, steps: int, node=echo) -> list[str]:
    nodes = [node("s0", 1), *(node(f"s{i}", "{{ steps.s0.output }}") for i in range(1, steps))]
    workflow = make_workflow(linear(*nodes))
    scheduler.version_graph(WorkflowVersion.objects.get(workflow=workflow).pk)  # loaded once per process
    with CaptureQueriesContext(connection) as queries:
        execution = engine.execute(workflow)
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert steps_of(execution)[f"s{steps - 1}"].output == 1
    return [query["sql"] for query in queries]


def _per_step(make_workflow, engine, node) -> float:
    small = len(_queries_of_a_run(make_workflow, engine, 5, node))
    medium = len(_queries_of_a_run(make_workflow, engine, 15, node))
    large = len(_queries_of_a_run(make_workflow, engine, 35, node))
    per_step = (medium - small) / 10
    assert per_step == (large - medium) / 20  # the same for step 6 as for step 36
    return per_step


def test_queries_per_step_are_few_and_do_not_grow_with_the_run(make_workflow, engine, settings):
    settings.OBSERVABILITY_FLUSH_SECONDS = 3600  # spans wait in the write buffer: engine queries only
    # a worker's step sent through the broker: read + claim the step, read the one step result
    # it references, lock the execution, write the step, create the next; and the savepoint (2)
    # around the finish in a test
    settings.WORKFLOWS_WORKER_CONTINUES = False
    assert _per_step(make_workflow, engine, echo) == 8
    # run next by the worker that made it ready: inserted already claimed (no read of its own
    # row, no claim UPDATE, no task)
    settings.WORKFLOWS_WORKER_CONTINUES = True
    assert _per_step(make_workflow, engine, echo) == 6
    # a pure step, evaluated where the run advances: read the result it references, write the
    # step, create the next (no claim, no lock of its own, no task)
    assert _per_step(make_workflow, engine, transform) == 3


def test_a_step_reads_one_step_row_whatever_the_length_of_the_run(make_workflow, engine, settings):
    settings.OBSERVABILITY_FLUSH_SECONDS = 3600

    def step_reads(steps: int, node) -> int:
        queries = _queries_of_a_run(make_workflow, engine, steps, node)
        return sum(
            1 for sql in queries if sql.startswith("SELECT") and 'FROM "workflows_stepexecution"' in sql
        )

    # per worker step: its own row (the claim) and the one result its template references
    settings.WORKFLOWS_WORKER_CONTINUES = False
    assert step_reads(20, echo) - step_reads(10, echo) == 2 * 10
    settings.WORKFLOWS_WORKER_CONTINUES = True  # run next by the same worker: no claim read
    assert step_reads(20, echo) - step_reads(10, echo) == 10
    # per pure step: the one result
    assert step_reads(20, transform) - step_reads(10, transform) == 10


@pytest.fixture
def sent_steps(monkeypatch) -> list:
    """The step ids of the run_step tasks sent (they still run)."""
    sent, send = [], scheduler._send

    def counting(task, args, options):
        if task.name.endswith(".run_step"):
            sent.append(args[0])
        send(task, args, options)

    monkeypatch.setattr(scheduler, "_send", counting)
    return sent


def test_the_worker_that_finishes_a_step_runs_the_next_one_itself(make_workflow, engine, sent_steps):
    definition = linear(
        echo("a", 1), echo("b", "{{ steps.a.output + 1 }}"), echo("c", "{{ steps.b.output + 1 }}")
    )
    execution = engine.execute(make_workflow(definition))
    assert (execution.status, steps_of(execution)["c"].output) == (ExecutionStatus.SUCCEEDED, 3)
    assert len(sent_steps) == 1  # the first step's task ran all three
    steps = list(execution.steps.all())
    assert {(s.status, s.dispatches, s.attempt) for s in steps} == {(StepStatus.SUCCEEDED, 1, 1)}
    assert len({s.worker for s in steps}) == 1


def test_only_one_ready_step_stays_with_the_worker(make_workflow, engine, sent_steps):
    definition = {
        "nodes": [echo("a", 1), echo("b", 2), echo("c", 3), echo("d", 4)],
        "edges": [{"source": "a", "target": t} for t in "bcd"],
    }
    execution = engine.execute(make_workflow(definition))
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert len(sent_steps) == 3  # a, and two of the three branches; the third ran after a


def test_a_next_step_that_might_outlast_the_tasks_time_limit_is_sent(
    make_workflow, engine, sent_steps, settings
):
    settings.WORKFLOWS_WORKER_CONTINUES = True
    long = {**echo("b", 2), "timeout_seconds": settings.WORKFLOWS_DEFAULT_STEP_TIMEOUT_SECONDS * 2}
    execution = engine.execute(make_workflow(linear(echo("a", 1), long, echo("c", 3))))
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert len(sent_steps) == 2  # b has a task of its own (with its own limits); c ran after b


def test_workers_can_be_told_to_send_every_step(make_workflow, engine, sent_steps, settings):
    settings.WORKFLOWS_WORKER_CONTINUES = False
    execution = engine.execute(make_workflow(linear(echo("a", 1), echo("b", 2), echo("c", 3))))
    assert execution.status == ExecutionStatus.SUCCEEDED and len(sent_steps) == 3


@pytest.mark.parametrize("elsewhere", [0, 30])  # the join check names its sources / the others
def test_a_wide_join_waits_for_its_last_source_whatever_else_the_graph_holds(
    make_workflow, engine, elsewhere
):
    CALLS.clear()
    branches = [echo(f"b{i}", i) for i in range(10)]
    branches[4] = flaky("b4", fail_times=1, retry={"max_attempts": 2, "backoff": 0})
    side = [echo(f"s{i}", i) for i in range(elsewhere)]
    definition = {
        "nodes": [echo("start", 0), *branches, *side, echo("join", "{{ steps.b4.output.attempt }}")],
        "edges": [{"source": "start", "target": b["id"]} for b in branches]
        + [{"source": b["id"], "target": "join"} for b in branches]
        + [{"source": "start", "target": n["id"]} for n in side],
    }  # fmt: skip
    execution = engine.execute(make_workflow(definition))
    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert execution.steps.filter(node_id="join").count() == 1
    assert steps_of(execution)["join"].output == 2  # after the retried branch's second attempt


def test_a_step_claimed_for_the_worker_does_not_run_when_the_same_finish_ends_the_run(make_workflow, engine):
    CALLS.clear()
    definition = {
        "nodes": [echo("a", 1), flaky("b"), echo("c", 3)],
        "edges": [
            {"source": "a", "target": "b"},  # b is created first, claimed for a's worker
            {"source": "a", "target": "c", "condition": "{{ inputs.missing.x }}"},  # then this fails the run
        ],
    }
    execution = engine.execute(make_workflow(definition))
    assert execution.status == ExecutionStatus.FAILED and "condition" in execution.error
    assert steps_of(execution)["b"].status == StepStatus.CANCELLED
    assert "b" not in CALLS  # never ran


def test_a_branch_finish_of_a_wide_join_does_not_ask_again_whether_the_run_is_busy(
    make_workflow, engine, settings
):
    settings.WORKFLOWS_WORKER_CONTINUES = False
    branches = [echo(f"b{i}", i) for i in range(12)]
    definition = {
        "nodes": [echo("start", 0), *branches, echo("join", "{{ steps.b11.output }}")],
        "edges": [{"source": "start", "target": b["id"]} for b in branches]
        + [{"source": b["id"], "target": "join"} for b in branches],
    }
    workflow = make_workflow(definition)
    with CaptureQueriesContext(connection) as queries:
        execution = engine.execute(workflow)
    assert (execution.status, steps_of(execution)["join"].output) == (ExecutionStatus.SUCCEEDED, 11)
    busy_reads = [
        q["sql"] for q in queries if q["sql"].startswith('SELECT DISTINCT "workflows_stepexecution"."status"')
    ]
    # branches finishing while others still queue learn it from the join check; the last ones
    # (nothing queued or running any more) and the join's finish ask
    assert len(busy_reads) <= 3, busy_reads


def test_a_run_of_pure_steps_sends_no_task(make_workflow, engine, monkeypatch):
    sent = []
    monkeypatch.setattr(scheduler, "_send", lambda task, args, options: sent.append(task.name))
    execution = engine.execute(
        make_workflow(linear(transform("a", 1), transform("b", "{{ steps.a.output + 1 }}")))
    )
    assert (execution.status, steps_of(execution)["b"].output) == (ExecutionStatus.SUCCEEDED, 2)
    assert "workflows.tasks.run_step" not in sent


# --- guarantees behind the shortcuts ------------------------------------------------------------
def test_a_wide_join_fires_once_after_a_retried_branch_and_a_skipped_one(make_workflow, engine):
    CALLS.clear()
    branches = [transform(f"b{i}", i) for i in range(12)]
    branches[3] = flaky("b3", fail_times=1, retry={"max_attempts": 2, "backoff": 0})
    definition = {
        "nodes": [transform("start", 0), *branches, transform("join", "{{ steps.b3.output.attempt }}"), transform("after", 1)],
        "edges": [{"source": "start", "target": b["id"]} for b in branches if b["id"] != "b5"]
        + [{"source": "start", "target": "b5", "condition": "{{ steps.start.output > 0 }}"}]
        + [{"source": b["id"], "target": "join"} for b in branches]
        + [{"source": "join", "target": "after"}],
    }  # fmt: skip
    execution = engine.execute(make_workflow(definition))
    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    steps = steps_of(execution)
    assert steps["b5"].status == StepStatus.SKIPPED
    assert execution.steps.filter(node_id="b3").count() == 2
    assert execution.steps.filter(node_id="join").count() == 1
    assert steps["join"].output == 2 and steps["after"].status == StepStatus.SUCCEEDED


def test_a_join_none_of_whose_edges_is_taken_is_skipped_and_so_is_what_follows(make_workflow, engine):
    definition = {
        "nodes": [
            {"id": "check", "type": "condition", "config": {"branches": [{"label": "yes", "when": True}]}},
            transform("a", 1),
            transform("b", 2),
            transform("join", 3),
            transform("tail", 4),
            transform("other", 5),
        ],
        "edges": [
            {"source": "check", "target": "a", "branch": "else"},
            {"source": "check", "target": "b", "branch": "else"},
            {"source": "check", "target": "other", "branch": "yes"},
            {"source": "a", "target": "join"},
            {"source": "b", "target": "join"},
            {"source": "join", "target": "tail"},
        ],
    }
    execution = engine.execute(make_workflow(definition))
    assert execution.status == ExecutionStatus.SUCCEEDED
    statuses = {node_id: step.status for node_id, step in steps_of(execution).items()}
    assert statuses == {
        "check": "succeeded",
        "a": "skipped",
        "b": "skipped",
        "join": "skipped",
        "tail": "skipped",
        "other": "succeeded",
    }


def test_a_retried_execution_does_not_create_a_reused_successor_again(make_workflow, engine, developer):
    CALLS.clear()
    # b fails (on_error continue) and c still runs; d fails the run. The retry reuses a and c,
    # runs b again (whose successor c already has its reused step) and d.
    definition = linear(
        transform("a", 1), flaky("b", fail_times=1, on_error="continue"), transform("c", 3), flaky("d", fail_times=1)
    )  # fmt: skip
    execution = engine.execute(make_workflow(definition))
    assert execution.status == ExecutionStatus.FAILED
    retry = engine.run(scheduler.execution_retry, execution=execution, actor=developer)
    retry.refresh_from_db()
    assert retry.status == ExecutionStatus.SUCCEEDED, retry.error
    assert list(retry.steps.filter(node_id="c").values_list("state", flat=True)) == [
        {"reused_from": str(steps_of(execution)["c"].pk)}
    ]
    assert CALLS == {"b": 2, "d": 2}


class _Redispatched(NodeHandler):
    """Simulates the reaper re-dispatching the step to another worker while it runs."""

    type = "test_redispatched"

    def run(self, ctx):
        StepExecution.objects.filter(pk=ctx.step.pk).update(dispatches=F("dispatches") + 1)
        return Done("late")


registry.register(_Redispatched())


def test_a_finish_whose_claim_was_lost_writes_nothing(make_workflow, engine):
    execution = engine.execute(
        make_workflow(linear({"id": "x", "type": "test_redispatched"}, transform("y", 1)))
    )
    step = execution.steps.get()
    assert (step.status, step.output, step.dispatches) == (StepStatus.RUNNING, None, 2)
    assert execution.status == ExecutionStatus.RUNNING and execution.steps.count() == 1
