"""The durable scheduler: all state in WorkflowExecution / StepExecution rows, Celery carries ids.

* Start: an execution is created `queued` and admitted (`running`) when the per-workflow and
  global concurrency limits allow, oldest first; admission creates the start step. A run that
  ends while runs are queued sends one admission task for its workflow (unless one is pending);
  it admits as many as fit, at a cost that does not depend on the length of the queue.
* Stopping (SIGTERM): a worker starts no further step, and hands back the steps still running
  after WORKFLOWS_SHUTDOWN_GRACE_SECONDS, so another worker need not wait for their lease.
* A step runs in a task: it is claimed with a conditional UPDATE (queued, or running with an
  expired lease), so a redelivered message whose attempt already finished does nothing. While
  the handler runs, a thread renews the lease (a heartbeat every WORKFLOWS_HEARTBEAT_SECONDS,
  lasting three beats), so a dead worker's step is noticed in seconds, not after its timeout. The
  handler runs outside any transaction; its result is written by `_step_finish`, which locks
  the execution row (`select_for_update`), records the step and advances the graph in the same
  transaction: a node becomes ready when every incoming edge is resolved and at least one was
  taken (all not taken: it is skipped), so a join fires exactly once. New steps are sent to
  Celery after commit; the worker that finished keeps one of them (claimed in that transaction)
  and runs it next in the same task (`_NextHere`, WORKFLOWS_WORKER_CONTINUES).
* Pure steps (transform, condition, output) are evaluated where the graph advances, under the
  same lock, and recorded like any step: no task of their own (`_evaluate_pure_steps`).
* Failures: a retryable failure creates the node's next attempt (exponential backoff with
  jitter, capped by `max_delay`); a final failure applies `on_error` (fail the run, continue,
  or take the `error` branch).
* Waiting: approvals, delays and sub-workflows (a `workflow` node, a `map` or `loop` over a
  workflow: child executions started under the parent's lock) leave the step `waiting` (no
  worker held); an execution with only waiting steps is `waiting`.
* Terminal states never change; every status change goes through `transition`.
* The reaper (`reap`, a beat task) times out runs past their deadline, re-dispatches steps whose
  lease expired (their worker died), that overran their timeout + grace though their heartbeat
  goes on (a hung handler) or whose message was lost, wakes due delays, times out approvals,
  tells waiting parents about children whose message was lost, and admits queued runs.
"""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from datetime import timedelta
from decimal import Decimal
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from agentmesh.core.exceptions import ConflictError, ServiceValidationError
from agentmesh.core.features import runtime_setting
from masterdata.constraints import first_schema_error
from observability import buffer
from observability.services import SpanHandle, buffered_spans, event_record, span_end, span_start, use_span

from ..models import (
    ACTIVE_EXECUTION_STATUSES,
    PENDING_STEP_STATUSES,
    TERMINAL_EXECUTION_STATUSES,
    TERMINAL_STEP_STATUSES,
    ExecutionStatus,
    StepExecution,
    StepStatus,
    Workflow,
    WorkflowExecution,
    WorkflowVersion,
)
from . import expressions
from .graph import ERROR_BRANCH, Graph
from .nodes import Done, StepContext, StepError, Wait, registry

logger = logging.getLogger(__name__)

E, S = ExecutionStatus, StepStatus
EXECUTION_TRANSITIONS: dict[str, set[str]] = {
    E.QUEUED: {E.RUNNING, E.CANCELLED, E.FAILED, E.TIMED_OUT},
    E.RUNNING: {E.WAITING, E.SUCCEEDED, E.FAILED, E.CANCELLED, E.TIMED_OUT},
    E.WAITING: {E.RUNNING, E.SUCCEEDED, E.FAILED, E.CANCELLED, E.TIMED_OUT},
}
STEP_TRANSITIONS: dict[str, set[str]] = {
    S.QUEUED: {S.RUNNING, S.CANCELLED},
    # back to queued: re-dispatched after its worker vanished
    S.RUNNING: {S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.WAITING, S.CANCELLED, S.QUEUED},
    S.WAITING: {S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED},
}


class IllegalTransition(ConflictError):
    default_code = "illegal_transition"


def transition(obj: WorkflowExecution | StepExecution, new: str) -> None:
    """Set `obj.status` to `new` if that move is legal (terminal states never change)."""
    table = EXECUTION_TRANSITIONS if isinstance(obj, WorkflowExecution) else STEP_TRANSITIONS
    if new not in table.get(obj.status, set()):
        label = "execution" if isinstance(obj, WorkflowExecution) else "step"
        raise IllegalTransition(f"The {label} is {obj.status}; it cannot become {new}.")
    obj.status = new


# --- dispatch ---------------------------------------------------------------------------------
_eager_queue: ContextVar[list | None] = ContextVar("workflows_eager_queue", default=None)
#: the depth of the execution whose step runs in this context (None outside any step): a
#: workflow started from inside a step (the `workflow` tool type via an agent) is one deeper
current_depth: ContextVar[int | None] = ContextVar("workflows_current_depth", default=None)


def _send(task, args: tuple, options: dict) -> None:
    from agentmesh.celery import app

    if not app.conf.task_always_eager:
        try:
            task.apply_async(args=args, **options)
        except Exception:  # broker down: the rows are committed, the reaper sends it again
            logger.warning(
                "could not send %s%s; the reaper will re-dispatch it", task.name, args, exc_info=True
            )
        return
    # Eager (tests, embedded debugging): run the chain of tasks in a loop, not recursively.
    queue = _eager_queue.get()
    if queue is not None:
        queue.append((task, args))
        return
    queue = [(task, args)]
    token = _eager_queue.set(queue)
    try:
        while queue:
            next_task, next_args = queue.pop(0)
            next_task.apply(args=next_args, throw=True)
    finally:
        _eager_queue.reset(token)


def _dispatch(task, *args, **options) -> None:
    """Send `task(*args)` once the surrounding transaction commits (ids only)."""
    transaction.on_commit(lambda: _send(task, args, options))


def _queue_options(execution: WorkflowExecution, **options) -> dict:
    """Every task of an execution goes to the queue it was started on (workers may start more)."""
    queue = (execution.metadata or {}).get("queue")
    return {**options, "queue": queue} if queue else options


def _dispatch_step(step: StepExecution, node: dict, countdown: float | None = None) -> None:
    from ..tasks import run_step

    limit = step_timeout(node) + settings.WORKFLOWS_LEASE_GRACE_SECONDS
    options: dict[str, Any] = {
        "soft_time_limit": limit - settings.WORKFLOWS_LEASE_GRACE_SECONDS / 2,
        "time_limit": limit,
    }
    if countdown:
        options["countdown"] = countdown
    _dispatch(run_step, str(step.pk), **_queue_options(step.execution, **options))


# --- helpers ----------------------------------------------------------------------------------
def step_timeout(node: dict) -> int:
    seconds = node.get("timeout_seconds") or settings.WORKFLOWS_DEFAULT_STEP_TIMEOUT_SECONDS
    return min(int(seconds), settings.WORKFLOWS_MAX_STEP_TIMEOUT_SECONDS)


def run_timeout(definition: dict) -> int:
    seconds = definition.get("timeout_seconds") or settings.WORKFLOWS_DEFAULT_RUN_TIMEOUT_SECONDS
    return min(int(seconds), settings.WORKFLOWS_MAX_RUN_TIMEOUT_SECONDS)


def backoff_seconds(node: dict, attempt: int) -> float:
    """Delay before attempt `attempt + 1`: backoff x 2^(attempt-1), capped, with jitter (50-100 %)."""
    retry = node.get("retry") or {}
    base = float(retry.get("backoff", 1))
    cap = float(retry.get("max_delay", 60))
    return min(base * 2 ** (attempt - 1), cap) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _key(execution_id, node_id: str, attempt: int) -> str:
    return f"{execution_id}:{node_id}:{attempt}"


@functools.lru_cache(maxsize=64)
def version_graph(version_id) -> Graph:
    """The parsed graph of a version, cached in the process (versions are immutable)."""
    definition, number = WorkflowVersion.objects.values_list("definition", "version").get(pk=version_id)
    return Graph(definition, version=number)


def _graph(execution: WorkflowExecution) -> Graph:
    return version_graph(execution.version_id)


def _latest_steps(execution: WorkflowExecution) -> dict[str, StepExecution]:
    latest: dict[str, StepExecution] = {}
    for step in execution.steps.order_by("attempt", "created_at"):
        latest[step.node_id] = step
    return latest


def _result(step) -> dict:
    return {"output": step.output, "status": step.status, "error": step.error}


def _step_results(execution: WorkflowExecution, node_ids, *, finished_only: bool = False) -> dict:
    """`steps.<id>` of the variables for the latest attempts of `node_ids` (None: every node)."""
    if node_ids is not None and not node_ids:
        return {}
    rows = StepExecution.objects.filter(execution_id=execution.pk)
    if node_ids is not None:
        rows = rows.filter(node_id__in=list(node_ids))
    latest: dict[str, dict] = {}
    for node_id, status, output, error in rows.order_by("attempt", "created_at").values_list(
        "node_id", "status", "output", "error"
    ):
        latest[node_id] = {"output": output, "status": status, "error": error}
    if finished_only:
        return {k: v for k, v in latest.items() if v["status"] in TERMINAL_STEP_STATUSES}
    return latest


def _variables(execution: WorkflowExecution, steps: dict[str, dict]) -> dict:
    return {
        "inputs": execution.inputs or {},
        "steps": steps,
        "execution": {"id": str(execution.pk), "workflow_id": str(execution.workflow_id)},
    }


def _lock(execution_id) -> WorkflowExecution:
    # no joins: the version comes from the graph cache, workflow and user load when needed
    return WorkflowExecution.objects.select_for_update().get(pk=execution_id)


# --- start and admission ------------------------------------------------------------------------
def validate_inputs(definition: dict, inputs: Any) -> dict:
    if inputs is None:
        inputs = {}
    if not isinstance(inputs, dict):
        raise ServiceValidationError("An object.", field="inputs")
    schema = definition.get("inputs")
    if schema:
        try:
            error = first_schema_error(schema, inputs, root="inputs")
        except Exception as exc:  # e.g. a $ref that cannot be resolved
            raise ServiceValidationError(
                f"The input schema cannot be applied: {exc}"[:500], field="inputs"
            ) from exc
        if error is not None:
            raise ServiceValidationError(str(error), field=error.field)
    return inputs


def execution_start(
    *,
    workflow: Workflow,
    user,
    inputs: Any = None,
    version: WorkflowVersion | None = None,
    idempotency_key: str = "",
    parent_step: StepExecution | None = None,
    depth: int = 0,
    metadata: dict | None = None,
) -> tuple[WorkflowExecution, bool]:
    """Create an execution of `version` (default: the current one) and admit it when the limits
    allow: (execution, created). The same Idempotency-Key from the same user returns the first."""
    key = (idempotency_key or "").strip()[:200]
    if key:
        existing = WorkflowExecution.objects.filter(workflow=workflow, user=user, idempotency_key=key).first()
        if existing is not None:
            return existing, False
    if version is None:
        version = WorkflowVersion.objects.filter(workflow=workflow, version=workflow.version).first()
        if version is None:
            raise ConflictError("The workflow has no saved version.")
    inputs = validate_inputs(version.definition, inputs)
    metadata = dict(metadata or {})
    if parent_step is not None:
        metadata.setdefault("queue", (parent_step.execution.metadata or {}).get("queue"))
    else:
        from agentmesh.celery import app

        metadata.setdefault("queue", app.conf.task_default_queue)
    # One transaction: a run being started is never seen queued (a finish meanwhile would
    # send an admission task for it).
    with transaction.atomic():
        try:
            with transaction.atomic():
                execution = WorkflowExecution.objects.create(
                    workflow=workflow,
                    version=version,
                    user=user if getattr(user, "pk", None) else None,
                    inputs=inputs,
                    idempotency_key=key,
                    parent_step=parent_step,
                    depth=depth,
                    metadata=metadata,
                )
        except IntegrityError:  # the same key raced us: the other request's execution wins
            return WorkflowExecution.objects.get(workflow=workflow, user=user, idempotency_key=key), False
        _admit(execution.pk)
    buffer.flush_if_due()  # the spans of steps evaluated in place (outside a request or task too)
    return execution_refresh(execution), True


def execution_refresh(execution: WorkflowExecution) -> WorkflowExecution:
    execution.refresh_from_db()
    return execution


ADMISSION_LOCK = int.from_bytes(b"wf-admit")  # a PostgreSQL advisory lock key (bigint)


def _global_admission_lock() -> None:
    """Admissions of every workflow wait until this transaction ends, so the global count sees
    them. Taken before any execution row is locked (one order: no deadlock with an admitter).
    SQLite serializes writers anyway."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADMISSION_LOCK])


def _has_capacity(execution: WorkflowExecution) -> bool:
    """Called in `_admit`'s transaction, under the global admission lock."""
    if execution.depth > 0:
        return True  # a child holds no slot of its own: its parent waits for it
    active = WorkflowExecution.objects.filter(status__in=ACTIVE_EXECUTION_STATUSES, depth=0)
    if active.count() >= runtime_setting("WORKFLOWS_MAX_RUNNING"):
        cache.set(GLOBAL_FULL_KEY, 1, 3600)
        return False
    if active.filter(workflow_id=execution.workflow_id).count() >= runtime_setting(
        "WORKFLOWS_MAX_RUNNING_PER_WORKFLOW"
    ):
        return False
    older = WorkflowExecution.objects.filter(
        workflow_id=execution.workflow_id, status=E.QUEUED, depth=0, created_at__lt=execution.created_at
    )
    return not older.exists()  # first in, first out


def _admit(execution_id, *, locked: WorkflowExecution | None = None) -> bool:
    """Move a queued execution to running when the limits allow; create its start step.
    `locked`: the execution, locked by the caller (`_admit_batch`), which counted the capacity
    under the admission lock and whose transaction this runs in."""
    checked = locked is not None
    with nullcontext() if checked else transaction.atomic():
        if not checked:
            row = (
                WorkflowExecution.objects.filter(pk=execution_id).values_list("workflow_id", "depth").first()
            )
            if row is None:
                return False
            # serializes admissions of one workflow (PostgreSQL)
            Workflow.objects.select_for_update().filter(pk=row[0]).first()
            if row[1] == 0:
                _global_admission_lock()
        execution = locked or _lock(execution_id)
        if execution.status != E.QUEUED or (not checked and not _has_capacity(execution)):
            return False
        now = timezone.now()
        transition(execution, E.RUNNING)
        execution.started_at = now
        execution.deadline = now + timedelta(seconds=run_timeout(_graph(execution).definition))
        handle = span_start(
            f"workflow {execution.workflow_name or execution.workflow.name}",
            kind="workflow",
            actor=execution.user_id,  # the id: no query for the user
            attributes={
                "gen_ai.operation.name": "invoke_workflow",
                "agentmesh.workflow.id": str(execution.workflow_id),
                "agentmesh.workflow.version": _graph(execution).version,
                "agentmesh.workflow.execution.id": str(execution.pk),
            },
        )
        execution.trace_id, execution.span_id = handle.trace_id, handle.span_id
        execution.metadata = {**execution.metadata, "parent_span_id": handle.parent_span_id}
        execution.save(
            update_fields=[
                "status",
                "started_at",
                "deadline",
                "trace_id",
                "span_id",
                "metadata",
                "updated_at",
            ]
        )
        event_record(
            type="workflow.execution.started",
            source="workflows",
            actor=execution.user_id,
            resource=execution,
            payload={"workflow_id": str(execution.workflow_id), "version": _graph(execution).version},
        )
        _advance(execution)
    return True


#: the queue of top-level runs waiting for admission (index workflows_exec_wf_status_time)
def _queue():
    return WorkflowExecution.objects.filter(status=E.QUEUED, depth=0)


#: runs admitted per transaction: the global admission lock is not held for long
ADMISSION_CHUNK = 20
_ADMITTER_CLASS = int.from_bytes(b"wfad") - 2**31  # the first key of the per-workflow try-lock


def _admitter_lock(workflow_id) -> bool:
    """One admitter per workflow (all workflows: None) at a time, until the transaction ends;
    a second one leaves at once (its work is done by the first, which looks again after)."""
    if connection.vendor != "postgresql":
        return True  # SQLite serializes writers anyway
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", [_ADMITTER_CLASS, str(workflow_id or "*")]
        )
        return cursor.fetchone()[0]


def _admission_wanted(execution: WorkflowExecution, task) -> None:
    """After commit, send an admission task for the run's workflow unless one is pending: the
    finishes that happen while it waits in the queue are admitted by it together (it clears
    the mark before it counts). A lost task: the mark expires and the reaper admits meanwhile."""
    workflow_id = str(execution.workflow_id or "")
    options = _queue_options(execution)

    def send() -> None:
        if cache.add(_pending_key(workflow_id), 1, 30):
            _send(task, (workflow_id,), options)

    transaction.on_commit(send)


def _pending_key(workflow_id) -> str:
    return f"workflows:admit-pending:{workflow_id or '*'}"


#: set while runs may wait for the global limit (not only for their workflow's): only then does
#: a finish whose workflow has no queue go on to other workflows' queues
GLOBAL_FULL_KEY = "workflows:admit-global-full"


def _again_key(workflow_id) -> str:
    return f"workflows:admit-again:{workflow_id or '*'}"


def _admit_batch(workflow_id, limit: int) -> tuple[int, bool] | None:
    """One transaction of `admit_queued`: (runs admitted, whether to go on with the runs of
    other workflows), or None when another admitter holds the lock. The queries do not depend
    on the length of the queue: two counts, the oldest runs that fit, one admission each."""
    again = _again_key(workflow_id)
    cache.set(again, 1, 300)  # before trying the lock: the holder sees it after its commit
    with transaction.atomic():
        if not _admitter_lock(workflow_id):
            return None
        cache.delete(again)  # what an admitter that left wanted is done here
        _global_admission_lock()
        active = WorkflowExecution.objects.filter(status__in=ACTIVE_EXECUTION_STATUSES, depth=0)
        free = runtime_setting("WORKFLOWS_MAX_RUNNING") - active.count()
        if free <= 0:
            cache.set(GLOBAL_FULL_KEY, 1, 3600)
        per_workflow = runtime_setting("WORKFLOWS_MAX_RUNNING_PER_WORKFLOW")
        admitted = 0
        if workflow_id is not None:  # the oldest runs of this workflow that fit
            room = min(free, per_workflow - active.filter(workflow_id=workflow_id).count(), limit)
            ids = []
            if room > 0:
                queued = _queue().filter(workflow_id=workflow_id).order_by("created_at")
                ids = list(queued.select_for_update()[:room])
                for execution in ids:
                    admitted += _admit(execution.pk, locked=execution)
            # its queue is empty and slots are left: they may go to runs of other workflows,
            # if some wait for the global limit
            return admitted, len(ids) < room and free > admitted and bool(cache.get(GLOBAL_FULL_KEY))
        # every workflow, oldest first; a full workflow is skipped (one count per workflow seen)
        full: set = set()
        counts: dict = {}
        while free > admitted and admitted < limit:
            row = _queue().exclude(workflow_id__in=full).order_by("created_at")
            row = row.values_list("pk", "workflow_id").first()
            if row is None:  # what is queued waits for its workflow's limit only
                cache.delete(GLOBAL_FULL_KEY)
                break
            execution_id, wf = row
            if wf not in counts:
                counts[wf] = active.filter(workflow_id=wf).count()
            if counts[wf] >= per_workflow:
                full.add(wf)
                continue
            if _admit(execution_id, locked=_lock(execution_id)):
                admitted += 1
                counts[wf] += 1
        return admitted, False


def admit_queued(limit: int = 500, *, workflow_id=None) -> int:
    """Admit queued top-level executions while the limits allow, first in first out: those of
    `workflow_id` (the workflow whose run just ended), then, only if its queue is empty, those of
    other workflows while global capacity is left; without `workflow_id` (the reaper) every
    workflow's. Costs O(runs admitted): a full workflow or the global limit ends it."""
    admitted, scope = 0, workflow_id
    if workflow_id is not None:
        cache.delete(_pending_key(workflow_id))  # later finishes send another task
    while admitted < limit:
        chunk = min(ADMISSION_CHUNK, limit - admitted)
        result = _admit_batch(scope, chunk)
        if result is None:
            break  # the admitter holding the lock looks again after it commits
        count, others = result
        admitted += count
        if count == chunk:
            continue  # more may fit
        if cache.delete(_again_key(scope)):
            continue  # an admitter left while this one held the lock: its finish may free a slot
        if scope is None or not others:
            break
        scope = None
    return admitted


def child_execution_start(
    *, execution: WorkflowExecution, step: StepExecution, config: dict, inputs: Any, idempotency_key: str
) -> WorkflowExecution:
    """Start the sub-workflow `config` names (a `workflow` node, or one item of a `map` over a
    workflow) as a child of `step`; the key makes it once per attempt (and item)."""
    depth = execution.depth + 1
    if depth > settings.WORKFLOWS_MAX_DEPTH:
        raise StepError(
            f"Workflows may call workflows at most {settings.WORKFLOWS_MAX_DEPTH} levels deep.",
            kind="limit",
            retryable=False,
        )
    workflow = Workflow.objects.filter(pk=config["workflow_id"]).first()
    if workflow is None:
        raise StepError("The sub-workflow no longer exists.", kind="config", retryable=False)
    version = None
    if config.get("version"):
        version = WorkflowVersion.objects.filter(workflow=workflow, version=config["version"]).first()
    try:
        child, _ = execution_start(
            workflow=workflow,
            user=execution.user or execution.workflow.owner,
            inputs=inputs,
            version=version,
            idempotency_key=idempotency_key,
            parent_step=step,
            depth=depth,
        )
    except ServiceValidationError as exc:
        field, messages = next(iter(exc.detail.items()))
        raise StepError(
            f"Sub-workflow {field}: {messages[0]}", kind="invalid_inputs", retryable=False
        ) from exc
    except ConflictError as exc:
        raise StepError(str(exc.detail), kind="config", retryable=False) from exc
    return child


# --- advancing the graph (under the execution's row lock) -------------------------------------
class _EdgeError(Exception):
    pass


def _edge_taken(edge: dict, graph: Graph, latest: dict, variables) -> bool | None:
    """None while the source is unresolved; else whether the edge is taken."""
    source = latest.get(edge["source"])
    if source is None or source.status in PENDING_STEP_STATUSES:
        return None
    node = graph.nodes[edge["source"]]
    branch = edge.get("branch")
    if source.status in (S.SKIPPED, S.CANCELLED):
        return False
    if source.status in (S.FAILED, S.TIMED_OUT):
        on_error = node.get("on_error", "fail")
        if on_error == "branch":
            return branch == ERROR_BRANCH
        if on_error != "continue" or branch is not None:
            return False  # continue: only unlabelled edges go on (a failed condition chose no branch)
    elif (branch == ERROR_BRANCH and node.get("on_error") == "branch") or (
        branch is not None and (source.output or {}).get("branch") != branch
    ):
        return False
    if "condition" in edge:
        if isinstance(variables, _EdgeVariables):
            variables = variables.load()
        try:
            return expressions.truthy(edge["condition"], variables)
        except expressions.ExpressionError as exc:
            raise _EdgeError(
                f"The condition of the edge {edge['source']} -> {edge['target']} failed: {exc}"
            ) from exc
    return True


def _advance(execution: WorkflowExecution, changed: StepExecution | None = None) -> None:
    """Create the steps that became ready (or skipped), then settle the execution's status.

    `changed` is the latest attempt of the node whose step just changed (a new retry attempt
    when one was created): only that node's successors can have become ready. Without it
    (admission, possibly with reused steps) the whole graph is evaluated."""
    if execution.finished:
        return
    if execution.deadline and timezone.now() > execution.deadline:
        _finish(execution, E.TIMED_OUT, error="The run exceeded its deadline.")
        return
    graph = _graph(execution)
    seen: dict[str, bool] = {}  # "busy": a queued or running step was seen on the way
    if changed is None:
        ready = _advance_all(execution, graph)
    else:
        ready = _advance_from(execution, graph, changed, seen)
    if ready:
        ready = _evaluate_pure_steps(execution, graph, ready)
    if ready is None or execution.finished:
        return
    if ready or seen.get("busy"):
        busy = True
    else:
        pending = set(
            execution.steps.filter(status__in=PENDING_STEP_STATUSES)
            .order_by()
            .values_list("status", flat=True)
            .distinct()
        )
        if not pending:
            _complete(execution, graph)
            return
        busy = bool(pending & {S.QUEUED, S.RUNNING})
    status = E.RUNNING if busy else E.WAITING
    if status != execution.status:
        transition(execution, status)
        execution.save(update_fields=["status", "updated_at"])
    follow = _next_here.get()
    for step in ready:
        if follow is None or step is not follow.step:  # that one was created claimed for this worker
            _dispatch_step(step, graph.nodes[step.node_id])


def _evaluate_pure_steps(
    execution: WorkflowExecution, graph: Graph, ready: list[StepExecution]
) -> list[StepExecution] | None:
    """Run the ready steps of pure nodes here (see `NodeHandler.pure`), then the steps they
    make ready, in turn; each is recorded like a worker's step. The steps left for workers, or
    None when the run ended."""
    pending = deque(ready)
    dispatch: list[StepExecution] = []
    while pending:
        step = pending.popleft()
        node = graph.nodes[step.node_id]
        if not registry.get(node["type"]).pure:
            dispatch.append(step)
            continue
        transition(step, S.RUNNING)
        step.started_at, step.worker = timezone.now(), _worker_name("")
        result, step_input, duration_ms = _run_handler(execution, step, node)
        changed = _record_result(execution, step, result, duration_ms=duration_ms, step_input=step_input)
        more = _advance_from(execution, graph, changed)
        if more is None or execution.finished:
            return None
        pending.extend(more)
    return dispatch


def _fails_run(graph: Graph, step) -> bool:
    return (
        step.status in (S.FAILED, S.TIMED_OUT) and graph.nodes[step.node_id].get("on_error", "fail") == "fail"
    )


def _create_step(execution: WorkflowExecution, node: dict, taken: bool) -> StepExecution:
    step = _new_step(execution, node, taken)
    step.save(force_insert=True)
    return step


def _new_step(execution: WorkflowExecution, node: dict, taken: bool) -> StepExecution:
    return StepExecution(
        execution=execution,
        node_id=node["id"],
        node_type=node["type"],
        status=S.QUEUED if taken else S.SKIPPED,
        idempotency_key=_key(execution.pk, node["id"], 1),
        finished_at=None if taken else timezone.now(),
    )


def _advance_all(execution: WorkflowExecution, graph: Graph) -> list[StepExecution] | None:
    """Evaluate every node without a step; the ready steps, or None when the run ended.
    Called at admission: only a retry starts with steps (those it reuses)."""
    latest = _latest_steps(execution) if execution.retry_of_id else {}
    for node_id, step in latest.items():
        if _fails_run(graph, step):
            _finish(execution, E.FAILED, error=f"The step {node_id} failed: {step.error}"[:5000])
            return None
    variables = _variables(execution, {node_id: _result(step) for node_id, step in latest.items()})
    ready: list[StepExecution] = []
    progress = True
    while progress:
        progress = False
        for node_id in graph.order:
            if node_id in latest:
                continue
            try:
                states = [_edge_taken(e, graph, latest, variables) for e in graph.incoming[node_id]]
            except _EdgeError as exc:
                _finish(execution, E.FAILED, error=str(exc))
                return None
            if any(state is None for state in states):
                continue
            taken = not states or any(states)
            step = _create_step(execution, graph.nodes[node_id], taken)
            latest[node_id] = step
            variables["steps"][node_id] = _result(step)
            if taken:
                ready.append(step)
            progress = True
    return ready


#: joins with more incoming edges than this are first checked with one aggregate row
WIDE_JOIN = 8


def _advance_from(
    execution: WorkflowExecution, graph: Graph, changed: StepExecution, seen: dict | None = None
) -> list[StepExecution] | None:
    """Evaluate the successors of `changed`'s node (and of the steps this skips, in turn);
    the ready steps, or None when the run ended. Reads only the rows of those nodes and of
    their other sources (status; outputs only for branch labels; conditions read what they
    reference). The caller holds the execution's row lock."""
    if _fails_run(graph, changed):
        _finish(execution, E.FAILED, error=f"The step {changed.node_id} failed: {changed.error}"[:5000])
        return None
    known: dict[str, Any] = {changed.node_id: changed}  # latest attempts read or written here
    ready: list[StepExecution] = []
    frontier = [changed.node_id] if changed.finished else []
    while frontier:
        targets = sorted({e["target"] for n in frontier for e in graph.outgoing[n]}, key=graph.position.get)
        targets = [t for t in targets if t not in known]
        frontier = []
        targets = [t for t in targets if not _wide_join_unresolved(execution, graph, t, known, seen)]
        if not targets:
            break
        _load_latest(execution, graph, targets, known)
        new: list[StepExecution] = []  # inserted together (a fan-out: one INSERT)
        for node_id in targets:
            if node_id in known:
                continue  # it has a step already
            edges = graph.incoming[node_id]
            if new and any("condition" in e for e in edges):
                new = _insert(new)  # a condition may read the steps created before it
            try:
                states = [_edge_taken(e, graph, known, _EdgeVariables(execution, graph, e)) for e in edges]
            except _EdgeError as exc:
                _insert(new)
                _finish(execution, E.FAILED, error=str(exc))
                return None
            if any(state is None for state in states):
                continue
            taken = not states or any(states)
            step = _new_step(execution, graph.nodes[node_id], taken)
            if (
                taken
                and (follow := _next_here.get()) is not None
                and follow.takes(step, graph.nodes[node_id])
            ):
                _claim_here(step, follow.worker)  # inserted claimed: no UPDATE, no task
            new.append(step)
            known[node_id] = step
            if taken:
                ready.append(step)
            else:
                frontier.append(node_id)
        _insert(new)
    return ready


def _insert(steps: list[StepExecution]) -> list[StepExecution]:
    if steps:
        StepExecution.objects.bulk_create(steps)
    return []


class _Row:
    __slots__ = ("error", "node_id", "output", "status")

    def __init__(self, node_id: str, status: str, output: Any = None, error: str = ""):
        self.node_id, self.status, self.output, self.error = node_id, status, output, error


def _load_latest(execution: WorkflowExecution, graph: Graph, targets: list[str], known: dict) -> None:
    """Put the latest attempts of `targets` and of their sources into `known` (one query;
    outputs only of sources with branch-labelled edges, which read them)."""
    # A node's first step is created only by _advance once all its sources are resolved, and
    # each target here has a source resolved in this very transaction: it cannot have a step
    # yet. Only a retried execution starts with steps (reused ones) that break this.
    need = set(targets) if execution.retry_of_id else set()
    outputs = set()
    for node_id in targets:
        for edge in graph.incoming[node_id]:
            need.add(edge["source"])
            if edge.get("branch") is not None:
                outputs.add(edge["source"])
    need -= known.keys()
    if not need:
        return
    rows = StepExecution.objects.filter(execution_id=execution.pk, node_id__in=list(need))
    if outputs - known.keys():
        values = rows.order_by("attempt", "created_at").values_list("node_id", "status", "output")
        for node_id, status, output in values:
            known[node_id] = _Row(node_id, status, output if node_id in outputs else None)
    else:
        for node_id, status in rows.order_by("attempt", "created_at").values_list("node_id", "status"):
            known[node_id] = _Row(node_id, status)


def _wide_join_unresolved(
    execution: WorkflowExecution, graph: Graph, node_id: str, known: dict, seen: dict | None = None
) -> bool:
    """For a node with many incoming edges: True when it certainly cannot be created now (it
    has a step, or a source has none or a pending one), from a one-row probe for a pending
    source and then one aggregate row, instead of a row per source."""
    sources = {edge["source"] for edge in graph.incoming[node_id]} - known.keys()
    if len(graph.incoming[node_id]) <= WIDE_JOIN or not sources:
        return False
    statuses = {known[s].status for s in known.keys() & {e["source"] for e in graph.incoming[node_id]}}
    if statuses & set(PENDING_STEP_STATUSES):
        if statuses & {S.QUEUED, S.RUNNING} and seen is not None:
            seen["busy"] = True
        return True
    rows = StepExecution.objects.filter(execution_id=execution.pk)
    wanted, others = [node_id, *sources], set(graph.nodes) - sources - {node_id}
    # the shorter list: a join of most of the graph names the few nodes that do not count
    rows = rows.filter(node_id__in=wanted) if len(wanted) <= len(others) else rows.exclude(node_id__in=others)
    pending = list(rows.filter(status__in=PENDING_STEP_STATUSES).values_list("status", flat=True)[:1])
    if pending:  # most branch finishes stop at this one-row probe
        if pending[0] in (S.QUEUED, S.RUNNING) and seen is not None:
            seen["busy"] = True  # the run is still running: no need to ask again
        return True
    counts = rows.aggregate(
        nodes=Count("node_id", distinct=True, filter=~Q(node_id=node_id)),
        target=Count("pk", filter=Q(node_id=node_id)),
    )
    return bool(counts["target"] or counts["nodes"] < len(sources))


class _EdgeVariables:
    """The variables of an edge condition, loaded only when the edge has one (and then only
    the steps it references)."""

    def __init__(self, execution: WorkflowExecution, graph: Graph, edge: dict):
        self.execution, self.graph, self.edge = execution, graph, edge

    def load(self) -> dict:
        edge = self.edge
        refs = self.graph.refs(f"edge:{edge['source']}:{edge['target']}:{id(edge)}", edge["condition"])
        return _variables(self.execution, _step_results(self.execution, refs))


def _complete(execution: WorkflowExecution, graph: Graph) -> None:
    mapping = graph.definition.get("outputs")
    try:
        if mapping:
            steps = _step_results(execution, graph.refs("outputs", mapping))
            outputs = expressions.render(mapping, _variables(execution, steps))
        else:
            output_nodes = [node_id for node_id in graph.order if graph.nodes[node_id]["type"] == "output"]
            steps = _step_results(execution, output_nodes)
            outputs = {
                node_id: steps[node_id]["output"]
                for node_id in output_nodes
                if node_id in steps and steps[node_id]["status"] == S.SUCCEEDED
            }
    except expressions.ExpressionError as exc:
        _finish(execution, E.FAILED, error=f"The outputs could not be computed: {exc}")
        return
    _finish(execution, E.SUCCEEDED, outputs=_jsonable(outputs))


def _finish(execution: WorkflowExecution, status: str, *, error: str = "", outputs: Any = None) -> None:
    """End the execution (status is terminal); pending steps are cancelled, children too."""
    from ..tasks import admit_queued_task, cancel_execution_task, child_finished_task

    transition(execution, status)
    now = timezone.now()
    execution.finished_at = now
    if execution.started_at:
        execution.duration_ms = (now - execution.started_at).total_seconds() * 1000
    execution.error = error[:5000]
    if outputs is not None:
        execution.outputs = outputs
    execution.save()
    execution.steps.filter(status__in=(S.QUEUED, S.WAITING)).update(status=S.CANCELLED, finished_at=now)
    follow = _next_here.get()
    if follow is not None and follow.step is not None and follow.step.execution_id == execution.pk:
        # created claimed for this worker in this transaction: it must not run now
        StepExecution.objects.filter(pk=follow.step.pk).update(status=S.CANCELLED, finished_at=now)
        follow.step = None
    children = WorkflowExecution.objects.filter(parent_step__execution=execution).exclude(
        status__in=[E.SUCCEEDED, E.FAILED, E.CANCELLED, E.TIMED_OUT]
    )
    for child_id in children.values_list("pk", flat=True):
        _dispatch(cancel_execution_task, str(child_id), **_queue_options(execution))
    _end_span(execution)
    event_record(
        type=f"workflow.execution.{status}",
        level="info" if status == E.SUCCEEDED else "warning",
        source="workflows",
        actor=execution.user,
        resource=execution,
        message=execution.error[:500],
        payload={"workflow_id": str(execution.workflow_id), "duration_ms": execution.duration_ms},
    )
    if execution.parent_step_id:
        _dispatch(child_finished_task, str(execution.pk), **_queue_options(execution))
    if execution.depth == 0 and _queue().exists():  # no admission work without a queue
        _admission_wanted(execution, admit_queued_task)


def _end_span(execution: WorkflowExecution) -> None:
    if not execution.span_id:
        return
    handle = SpanHandle(
        name=f"workflow {execution.workflow.name}",
        kind="workflow",
        trace_id=execution.trace_id,
        span_id=execution.span_id,
        parent_span_id=(execution.metadata or {}).get("parent_span_id", ""),
        attributes={
            "gen_ai.operation.name": "invoke_workflow",
            "agentmesh.workflow.id": str(execution.workflow_id),
            "agentmesh.workflow.version": _graph(execution).version,
            "agentmesh.workflow.execution.id": str(execution.pk),
            "agentmesh.workflow.status": execution.status,
            "gen_ai.usage.input_tokens": execution.input_tokens,
            "gen_ai.usage.output_tokens": execution.output_tokens,
            "agentmesh.cost_usd": str(execution.cost_usd),
        },
        user_id=execution.user_id,
    )
    handle.persisted = True
    if execution.started_at:
        handle.start_time = execution.started_at
        handle._t0 = time.perf_counter() - (timezone.now() - execution.started_at).total_seconds()
    failed = execution.status != E.SUCCEEDED
    span_end(
        handle,
        status="error" if failed else "ok",
        error=execution.error or execution.status if failed else "",
    )


# --- running one step ------------------------------------------------------------------------------
class _NextHere:
    """While a worker records its step: the one worker step this makes ready (of the same run)
    is claimed for this worker, which runs it next in the same task instead of sending it
    through the broker, as long as it can end before the task's soft time limit."""

    def __init__(self, execution_id, worker: str, soft_deadline: float):
        self.execution_id, self.worker, self.soft_deadline = execution_id, worker, soft_deadline
        self.step: StepExecution | None = None

    def takes(self, step: StepExecution, node: dict) -> bool:
        if self.step is not None or step.execution_id != self.execution_id or registry.get(node["type"]).pure:
            return False
        if shutting_down():
            return False  # the worker is stopping: the step goes through the broker
        if time.monotonic() + step_timeout(node) > self.soft_deadline:
            return False
        self.step = step
        return True


_next_here: ContextVar[_NextHere | None] = ContextVar("workflows_next_here", default=None)

#: set when the worker began to shut down (SIGTERM: `worker_shutting_down`, in the worker's main
#: process); shared memory made before the pool forks, so its child processes see it too
_SHUTTING_DOWN = multiprocessing.RawValue("b", 0)


def worker_shutting_down() -> None:
    _SHUTTING_DOWN.value = 1


def shutting_down() -> bool:
    return bool(_SHUTTING_DOWN.value)


def _release(step: StepExecution) -> bool:
    """Hand a step this worker claimed back: queued again (the claim cleared) and sent through
    the broker, so another worker takes it now instead of after its lease ran out."""
    released = StepExecution.objects.filter(pk=step.pk, status=S.RUNNING, dispatches=step.dispatches).update(
        status=S.QUEUED, lease_expires_at=None, updated_at=timezone.now(), not_before=None
    )
    if released:
        from ..tasks import run_step

        execution = WorkflowExecution.objects.get(pk=step.execution_id)
        node = _graph(execution).nodes[step.node_id]
        limit = step_timeout(node) + settings.WORKFLOWS_LEASE_GRACE_SECONDS
        options = {"soft_time_limit": limit - settings.WORKFLOWS_LEASE_GRACE_SECONDS / 2, "time_limit": limit}
        _send(run_step, (str(step.pk),), _queue_options(execution, **options))
        logger.info("worker shutting down: step %s handed back", step.pk)
    return bool(released)


def _claim_here(step: StepExecution, worker: str) -> None:
    """Claim a step about to be inserted for this worker (it is inserted running)."""
    now = timezone.now()
    transition(step, S.RUNNING)
    step.started_at, step.worker = now, worker
    step.lease_expires_at, step.dispatches = now + _lease_ttl(), step.dispatches + 1


def _worker_name(worker: str) -> str:
    return (worker or socket.gethostname())[:200]


def _lease_ttl() -> timedelta:
    """How long a claim holds without a heartbeat: three beats, so one late beat loses nothing."""
    return timedelta(seconds=3 * settings.WORKFLOWS_HEARTBEAT_SECONDS)


@contextmanager
def _heartbeat(step: StepExecution) -> Iterator[None]:
    """Renew the lease of the claimed `step` every WORKFLOWS_HEARTBEAT_SECONDS while the block
    runs, from a thread with a database connection of its own. The UPDATE applies only while
    this claim holds (running, same dispatch count): it never revives a re-dispatched step."""
    claim = StepExecution.objects.filter(pk=step.pk, status=S.RUNNING, dispatches=step.dispatches)
    stop = threading.Event()

    every = settings.WORKFLOWS_HEARTBEAT_SECONDS
    tick = min(every, 0.25)  # how soon a shutdown is noticed

    def beat() -> None:
        next_beat, release_at = time.monotonic() + every, None
        try:
            while not stop.wait(tick):
                now = time.monotonic()
                if shutting_down():
                    if release_at is None:
                        release_at = now + settings.WORKFLOWS_SHUTDOWN_GRACE_SECONDS
                    if now >= release_at:  # it will not end in the grace: another worker runs it
                        try:
                            _release(step)
                        except Exception:  # then its lease runs out as if the worker died
                            logger.warning("could not hand back step %s", step.pk, exc_info=True)
                        return
                if now < next_beat:
                    continue
                next_beat = now + every
                try:
                    if not claim.update(lease_expires_at=timezone.now() + _lease_ttl()):
                        return  # re-dispatched or gone: the claim is lost
                except Exception:  # the step goes on; if beats keep failing, it is re-dispatched
                    logger.warning("could not renew the lease of step %s", step.pk, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"step-heartbeat-{step.pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _run_handler(
    execution: WorkflowExecution, step: StepExecution, node: dict, *, beat=None
) -> tuple[Done | Wait | StepError, Any, float]:
    """Run the node's handler for `step` in a step span: (result, rendered input, ms). Never
    raises for what the handler does (a crash is an internal StepError)."""
    graph = _graph(execution)
    timeout = step_timeout(node)
    variables = _variables(
        execution, _step_results(execution, graph.node_refs(step.node_id), finished_only=True)
    )
    try:
        step_input = expressions.render(node.get("config") or {}, variables)
    except expressions.ExpressionError:
        step_input = node.get("config") or {}
    handler = registry.get(node["type"])
    handle = span_start(
        f"step {node['id']}",
        kind="step",
        actor=execution.user_id,  # the id: no query for the user
        trace_id=execution.trace_id or None,
        parent_span_id=execution.span_id or None,
        persist=False,
        attributes={
            "agentmesh.workflow.execution.id": str(execution.pk),
            "agentmesh.workflow.node.id": node["id"],
            "agentmesh.workflow.node.type": node["type"],
            "agentmesh.workflow.step.attempt": step.attempt,
        },
    )
    ctx = StepContext(execution=execution, step=step, node=node, variables=variables, timeout=timeout)
    t0 = time.perf_counter()
    result: Done | Wait | StepError
    # Eager only: tasks sent while the handler runs (a workflow it starts and waits for) run
    # in a loop of their own, to completion, instead of after this step.
    queue_token = _eager_queue.set(None)
    depth_token = current_depth.set(execution.depth)
    with use_span(handle):
        try:
            with beat or nullcontext():
                result = handler.run(ctx)
            if isinstance(result, Done) and time.perf_counter() - t0 > timeout:
                result = StepError(f"The step did not finish within {timeout}s.", kind="timeout")
        except StepError as exc:
            result = exc
        except SoftTimeLimitExceeded:
            result = StepError(f"The step did not finish within {timeout}s.", kind="timeout")
        except Exception as exc:  # a handler bug must not leave the step running
            logger.exception("workflow step %s (%s) crashed", step.pk, node["type"])
            result = StepError(f"Internal error: {type(exc).__name__}: {exc}"[:2000], kind="internal")
        finally:
            current_depth.reset(depth_token)
            _eager_queue.reset(queue_token)
    duration_ms = (time.perf_counter() - t0) * 1000
    if isinstance(result, Done):
        handle.set_attributes(
            {
                "gen_ai.usage.input_tokens": result.input_tokens,
                "gen_ai.usage.output_tokens": result.output_tokens,
                "agentmesh.cost_usd": str(result.cost_usd),
            }
        )
    _end_step_span(
        handle,
        status="error" if isinstance(result, StepError) else "ok",
        error=str(result) if isinstance(result, StepError) else "",
    )
    return result, _jsonable(step_input), duration_ms


def step_run(step_id, *, worker: str = "") -> str | None:
    """Claim and run one step attempt (the task's body). A step that is no longer claimable
    (finished, or running elsewhere under a live lease) is left alone."""
    from agentmesh.celery import app

    now = timezone.now()
    try:  # get, not first: no ORDER BY to compile (this runs for every step)
        step = StepExecution.objects.select_related("execution").get(pk=step_id)
    except StepExecution.DoesNotExist:
        return None
    execution = step.execution
    if execution.finished:
        StepExecution.objects.filter(pk=step.pk, status=S.QUEUED).update(status=S.CANCELLED, finished_at=now)
        return None
    graph = _graph(execution)
    node = graph.nodes[step.node_id]
    claimable = Q(status=S.QUEUED) | Q(status=S.RUNNING, lease_expires_at__lt=now)
    claim = {
        "status": S.RUNNING,
        "started_at": now,
        "worker": _worker_name(worker),
        "lease_expires_at": now + _lease_ttl(),
        "dispatches": step.dispatches + 1,
    }
    # Optimistic: only if nobody claimed it since we read it (dispatches unchanged).
    if not StepExecution.objects.filter(claimable, pk=step.pk, dispatches=step.dispatches).update(**claim):
        return None
    for name, value in claim.items():
        setattr(step, name, value)
    # the task's soft time limit (see _dispatch_step): steps run here next must end before it
    soft_deadline = time.monotonic() + step_timeout(node) + settings.WORKFLOWS_LEASE_GRACE_SECONDS / 2
    worker_name = claim["worker"]
    while True:
        # Eager (tests): nothing reaps meanwhile, and a second writer would lock SQLite.
        beat = None if app.conf.task_always_eager else _heartbeat(step)
        result, step_input, duration_ms = _run_handler(execution, step, node, beat=beat)
        follow = _NextHere(execution.pk, worker_name, soft_deadline)
        token = _next_here.set(follow if settings.WORKFLOWS_WORKER_CONTINUES else None)
        try:
            status = _step_finish(execution.pk, step, result, duration_ms=duration_ms, step_input=step_input)
        finally:
            _next_here.reset(token)
        if follow.step is None:
            break
        step = follow.step  # claimed for this worker in the transaction that just committed
        if shutting_down():  # began after it was claimed: another worker runs it
            _release(step)
            break
        execution, node = step.execution, _graph(step.execution).nodes[step.node_id]
    buffer.flush_if_due()  # a worker's task_postrun does this too; eager runs (tests) have only this
    return status


def _end_step_span(handle: SpanHandle, **kwargs) -> None:
    with buffered_spans():  # written with other spans in one bulk insert per flush
        span_end(handle, **kwargs)


class _NotClaimed(Exception):
    """The step is no longer running under the claim that ran it."""


def _save_step(step: StepExecution) -> None:
    """`step.save()`; the first save of a step its worker finishes is one UPDATE that applies
    only while that worker's claim holds (still running, same dispatch count); else it raises
    _NotClaimed. So the finish needs no locking read of the step."""
    dispatches = step.__dict__.pop("_claimed_dispatches", None)
    if dispatches is None:
        step.save()
        return
    step.updated_at = timezone.now()
    values = {field.attname: getattr(step, field.attname) for field in _step_writable_fields()}
    if not StepExecution.objects.filter(pk=step.pk, status=S.RUNNING, dispatches=dispatches).update(**values):
        raise _NotClaimed


@functools.cache
def _step_writable_fields() -> list:
    return [
        field
        for field in StepExecution._meta.concrete_fields
        if not field.primary_key and field.name not in ("execution", "created_at")
    ]


def _step_finish(
    execution_id, step: StepExecution, result, *, duration_ms: float, step_input: Any
) -> str | None:
    """Record the result of the attempt that `step` (as claimed by this worker) ran."""
    try:
        with transaction.atomic():
            try:
                execution = _lock(execution_id)
            except WorkflowExecution.DoesNotExist:
                return None  # deleted while the step ran
            step.execution = execution
            step._claimed_dispatches = step.dispatches
            return _step_record(execution, step, result, duration_ms=duration_ms, step_input=step_input)
    except _NotClaimed:  # re-dispatched meanwhile (the newer claim owns the step), or deleted
        follow = _next_here.get()
        if follow is not None:
            follow.step = None  # rolled back with the rest
        return StepExecution.objects.filter(pk=step.pk).values_list("status", flat=True).first()


def _step_record(
    execution: WorkflowExecution, step: StepExecution, result, *, duration_ms: float, step_input: Any
) -> str:
    changed = _record_result(execution, step, result, duration_ms=duration_ms, step_input=step_input)
    _advance(execution, changed)
    return step.status


def _record_result(
    execution: WorkflowExecution, step: StepExecution, result, *, duration_ms: float, step_input: Any
) -> StepExecution:
    """Write the attempt's result; the node's latest attempt after it (a retry, or `step`)."""
    node = _graph(execution).nodes[step.node_id]
    step.input = step_input
    step.duration_ms = duration_ms
    step.lease_expires_at = None
    retry = None
    if isinstance(result, Done):
        _step_succeeded(execution, step, result)
    elif isinstance(result, Wait):
        if execution.finished:
            transition(step, S.CANCELLED)
            step.finished_at = timezone.now()
            _save_step(step)
            child_id = result.state.get("child_execution_id")
            if child_id:  # started after the run ended: it must not run on alone
                from ..tasks import cancel_execution_task

                _dispatch(cancel_execution_task, child_id, **_queue_options(execution))
        else:
            retry = _step_waits(execution, step, node, result)
    else:
        retry = _step_failed(execution, step, node, result)
    return retry or step


def _step_succeeded(execution: WorkflowExecution, step: StepExecution, result: Done) -> None:
    transition(step, S.SUCCEEDED)
    step.output = _jsonable(result.output)
    step.finished_at = timezone.now()
    step.input_tokens, step.output_tokens, step.cost_usd = (
        result.input_tokens,
        result.output_tokens,
        result.cost_usd,
    )
    if result.state:
        step.state = _jsonable({**step.state, **result.state})
    _save_step(step)
    if result.input_tokens or result.output_tokens or result.cost_usd:
        WorkflowExecution.objects.filter(pk=execution.pk).update(
            input_tokens=F("input_tokens") + result.input_tokens,
            output_tokens=F("output_tokens") + result.output_tokens,
            cost_usd=F("cost_usd") + Decimal(result.cost_usd),
        )
        execution.refresh_from_db(fields=["input_tokens", "output_tokens", "cost_usd"])


def _step_waits(
    execution: WorkflowExecution, step: StepExecution, node: dict, result: Wait
) -> StepExecution | None:
    """Record a waiting step; the retry attempt if a sub-workflow already failed."""
    from ..tasks import wake_step

    transition(step, S.WAITING)
    step.wait_kind = result.kind
    step.wake_at = result.wake_at
    step.state = _jsonable({**step.state, **result.state})
    _save_step(step)
    if result.kind == "delay" and result.wake_at:
        countdown = max(0.0, (result.wake_at - timezone.now()).total_seconds())
        _dispatch(wake_step, str(step.pk), **_queue_options(execution, countdown=countdown))
    elif result.kind == "workflow":
        child = WorkflowExecution.objects.filter(pk=result.state.get("child_execution_id")).first()
        if child is not None and child.finished:  # it finished before this step got here
            return _resolve_child_wait(execution, step, node, child)
    elif result.kind == "map":
        return _map_progress(execution, step, node)
    elif result.kind == "loop":
        return _loop_progress(execution, step, node)
    return None


def _step_failed(
    execution: WorkflowExecution, step: StepExecution, node: dict, error: StepError
) -> StepExecution | None:
    """Record a failed attempt; retry it (a new attempt after a backoff) when it may, and
    return the retry (the node's new latest attempt)."""
    transition(step, S.TIMED_OUT if error.kind == "timeout" else S.FAILED)
    step.error = str(error)[:5000]
    step.error_kind = error.kind[:30]
    step.finished_at = timezone.now()
    _save_step(step)
    max_attempts = (node.get("retry") or {}).get("max_attempts", 1)
    if execution.finished or not error.retryable or step.attempt >= max_attempts:
        event_record(
            type="workflow.step.failed",
            level="warning",
            source="workflows",
            actor=execution.user,
            resource=execution,
            message=step.error[:500],
            payload={"node_id": step.node_id, "attempt": step.attempt, "kind": step.error_kind},
        )
        return None
    delay = backoff_seconds(node, step.attempt)
    retry = StepExecution.objects.create(
        execution=execution,
        node_id=step.node_id,
        node_type=step.node_type,
        attempt=step.attempt + 1,
        status=S.QUEUED,
        not_before=timezone.now() + timedelta(seconds=delay),
        idempotency_key=_key(execution.pk, step.node_id, step.attempt + 1),
    )
    event_record(
        type="workflow.step.retried",
        source="workflows",
        actor=execution.user,
        resource=execution,
        message=step.error[:500],
        payload={"node_id": step.node_id, "attempt": retry.attempt, "delay_seconds": round(delay, 3)},
    )
    _dispatch_step(retry, node, countdown=delay)
    return retry


def _resolve_child_wait(
    execution: WorkflowExecution, step: StepExecution, node: dict, child: WorkflowExecution
) -> StepExecution | None:
    if child.status == E.SUCCEEDED:
        _step_succeeded(
            execution,
            step,
            Done(
                {"outputs": child.outputs, "execution_id": str(child.pk)},
                input_tokens=child.input_tokens,
                output_tokens=child.output_tokens,
                cost_usd=child.cost_usd,
            ),
        )
        return None
    retryable = child.status in (E.FAILED, E.TIMED_OUT)
    kind = "timeout" if child.status == E.TIMED_OUT else "workflow"
    message = f"The sub-workflow ended {child.status}: {child.error}"
    return _step_failed(execution, step, node, StepError(message, kind=kind, retryable=retryable))


def _map_progress(execution: WorkflowExecution, step: StepExecution, node: dict) -> StepExecution | None:
    """Move a `map` over a sub-workflow on (under the execution's lock): fail the step when a
    child failed, start children while fewer than the concurrency cap run, and succeed with the
    children's outputs in item order once all have. Returns a retry attempt if one was made.
    Idempotent: it reads the children's state each time."""
    inputs, started = step.state["map_inputs"], list(step.state["children"])
    children = {
        str(child.pk): child
        for child in WorkflowExecution.objects.filter(pk__in=started).only(
            "pk", "status", "outputs", "error", "input_tokens", "output_tokens", "cost_usd"
        )
    }
    running = 0
    for index, child_id in enumerate(started):
        child = children.get(child_id)
        if (error := _child_error(f"item {index}", child)) is not None:
            return _children_failed(execution, step, node, error, children.values())
        running += not child.finished
    config = node["config"]["workflow"]
    while len(started) < len(inputs) and running < step.state["map_concurrency"]:
        index = len(started)
        try:
            child = child_execution_start(
                execution=execution,
                step=step,
                config=config,
                inputs=inputs[index],
                idempotency_key=f"{step.idempotency_key}:{index}",
            )
        except StepError as exc:
            return _children_failed(execution, step, node, exc, children.values())
        started.append(str(child.pk))
        children[str(child.pk)] = child
        running += 1
    if running or len(started) < len(inputs):
        step.state = {**step.state, "children": started}
        step.save(update_fields=["state", "updated_at"])
        return None
    step.state = {**step.state, "children": started}
    done = Done([children[child_id].outputs for child_id in started])
    _step_succeeded(execution, step, _with_usage_of(done, children.values()))
    return None


def _child_error(which: str, child: WorkflowExecution | None) -> StepError | None:
    """The error of a step whose child (`which`: "item 3", "iteration 2") ended without success."""
    if child is not None and (not child.finished or child.status == E.SUCCEEDED):
        return None
    status, why = (child.status, child.error) if child else ("deleted", "")
    return StepError(
        f"The sub-workflow of {which} ended {status}: {why}",
        kind="timeout" if status == E.TIMED_OUT else "workflow",
        retryable=status in (E.FAILED, E.TIMED_OUT),
    )


def _loop_progress(execution: WorkflowExecution, step: StepExecution, node: dict) -> StepExecution | None:
    """Move a `loop` over a sub-workflow on (under the execution's lock): when the running
    child has succeeded, end the step if `until` holds (or the iterations are spent), else start
    the next child with `loop` in the variables of its inputs. Idempotent, like a map's."""
    config = node["config"]
    started, outputs = list(step.state["children"]), list(step.state["loop_outputs"])
    if started:
        child = WorkflowExecution.objects.filter(pk=started[-1]).first()
        if (error := _child_error(f"iteration {len(started) - 1}", child)) is not None:
            return _step_failed(execution, step, node, error)
        if not child.finished:
            return None
        if len(outputs) < len(started):
            outputs.append(child.outputs)
    graph = _graph(execution)
    variables = _variables(
        execution, _step_results(execution, graph.node_refs(step.node_id), finished_only=True)
    )
    last = outputs[-1] if outputs else None
    limit = config.get("max_iterations", settings.WORKFLOWS_MAX_LOOP_ITERATIONS)
    try:
        loop = {"index": len(outputs) - 1, "output": last, "outputs": outputs}
        holds = bool(outputs) and expressions.truthy(config["until"], {**variables, "loop": loop})
        if not holds and len(outputs) < limit:  # the next iteration
            loop = {"index": len(outputs), "output": last, "outputs": outputs}
            inputs = expressions.render(config["workflow"].get("inputs") or {}, {**variables, "loop": loop})
            child = child_execution_start(
                execution=execution,
                step=step,
                config=config["workflow"],
                inputs=inputs,
                idempotency_key=f"{step.idempotency_key}:{len(started)}",
            )
            step.state = {**step.state, "children": [*started, str(child.pk)], "loop_outputs": outputs}
            step.save(update_fields=["state", "updated_at"])
            return None
    except expressions.ExpressionError as exc:
        return _step_failed(execution, step, node, StepError(str(exc), kind="expression", retryable=False))
    except StepError as exc:
        return _step_failed(execution, step, node, exc)
    step.state = {**step.state, "loop_outputs": outputs}
    if not holds and config.get("on_exhausted", "fail") == "fail":
        error = StepError(f"The loop's condition did not hold after {limit} iterations.", kind="limit")
        return _step_failed(execution, step, node, error)
    done = Done({"iterations": len(outputs), "output": last, "outputs": outputs})
    _step_succeeded(execution, step, _with_usage_of(done, WorkflowExecution.objects.filter(pk__in=started)))
    return None


def _with_usage_of(done: Done, children) -> Done:
    """`done` with the tokens and cost of the child executions added."""
    for child in children:
        done.input_tokens += child.input_tokens
        done.output_tokens += child.output_tokens
        done.cost_usd += child.cost_usd
    return done


def _children_failed(execution, step, node, error: StepError, children) -> StepExecution | None:
    """Fail the step; its children still running are cancelled (they would run for nothing)."""
    from ..tasks import cancel_execution_task

    for child in children:
        if not child.finished:
            _dispatch(cancel_execution_task, str(child.pk), **_queue_options(execution))
    return _step_failed(execution, step, node, error)


# --- entry points for tasks, the API and the reaper --------------------------------------------
def child_finished(child_id) -> None:
    """A sub-workflow ended: complete the parent step that waits for it (once)."""
    child = WorkflowExecution.objects.filter(pk=child_id).only("parent_step_id").first()
    if child is None or child.parent_step_id is None:
        return
    parent_execution_id = (
        StepExecution.objects.filter(pk=child.parent_step_id).values_list("execution_id", flat=True).first()
    )
    if parent_execution_id is None:
        return
    with transaction.atomic():
        execution = _lock(parent_execution_id)
        step = StepExecution.objects.select_for_update().get(pk=child.parent_step_id)
        step.execution = execution
        if execution.finished or step.status != S.WAITING:
            return
        node = _graph(execution).nodes[step.node_id]
        if step.wait_kind in ("map", "loop") and str(child_id) in step.state.get("children", []):
            progress = _map_progress if step.wait_kind == "map" else _loop_progress
            retry = progress(execution, step, node)
        elif step.state.get("child_execution_id") == str(child_id):
            retry = _resolve_child_wait(execution, step, node, WorkflowExecution.objects.get(pk=child_id))
        else:
            return
        _advance(execution, retry or step)


def step_wake(step_id, *, now=None) -> bool:
    """End a delay whose time has come (early calls do nothing)."""
    now = now or timezone.now()
    execution_id = StepExecution.objects.filter(pk=step_id).values_list("execution_id", flat=True).first()
    if execution_id is None:
        return False
    with transaction.atomic():
        execution = _lock(execution_id)
        step = StepExecution.objects.select_for_update().get(pk=step_id)
        if execution.finished or step.status != S.WAITING or step.wait_kind != "delay":
            return False
        if step.wake_at and step.wake_at > now:
            return False
        _step_succeeded(execution, step, Done({"waited_seconds": step.state.get("seconds", 0)}))
        _advance(execution, step)
    return True


def execution_cancel(*, execution: WorkflowExecution, actor=None) -> WorkflowExecution:
    """Cancel a queued, running or waiting execution (409 once it has ended)."""
    with transaction.atomic():
        locked = _lock(execution.pk)
        _finish(
            locked, E.CANCELLED, error=f"Cancelled by {getattr(actor, 'username', None) or 'the system'}."
        )
    return execution_refresh(execution)


def approval_decide(
    *, execution: WorkflowExecution, actor, approve: bool, comment: str = "", node_id: str = ""
) -> WorkflowExecution:
    """Approve or reject the waiting approval step (a rejection fails it, no retry)."""
    with transaction.atomic():
        locked = _lock(execution.pk)
        if locked.finished:
            raise IllegalTransition(f"The execution is {locked.status}.")
        waiting = locked.steps.select_for_update().filter(status=S.WAITING, wait_kind="approval")
        if node_id:
            waiting = waiting.filter(node_id=node_id)
        step = waiting.order_by("created_at").first()
        if step is None:
            field = "node_id" if node_id else "non_field_errors"
            raise ServiceValidationError("No approval is waiting here.", field=field, code="not_waiting")
        node = _graph(locked).nodes[step.node_id]
        who = getattr(actor, "username", "")
        step.state = {**step.state, "decided_by": who, "comment": comment, "approved": approve}
        retry = None
        if approve:
            _step_succeeded(locked, step, Done({"approved": True, "by": who, "comment": comment}))
        else:
            reason = f"Rejected by {who}" + (f": {comment}" if comment else ".")
            retry = _step_failed(locked, step, node, StepError(reason, kind="rejected", retryable=False))
        event_record(
            type="workflow.approval.approved" if approve else "workflow.approval.rejected",
            source="workflows",
            actor=actor,
            resource=locked,
            payload={"node_id": step.node_id},
        )
        _advance(locked, retry or step)
    return execution_refresh(execution)


RETRYABLE_EXECUTION_STATUSES = (E.FAILED, E.TIMED_OUT, E.CANCELLED)


def execution_retry(*, execution: WorkflowExecution, actor) -> WorkflowExecution:
    """A new execution of the same version and inputs that reuses the succeeded steps' outputs
    and runs again from the steps that failed (or never ran)."""
    if execution.status not in RETRYABLE_EXECUTION_STATUSES:
        raise IllegalTransition(
            f"Only failed, timed out or cancelled executions can be retried; this one is {execution.status}."
        )
    with transaction.atomic():
        retry = WorkflowExecution.objects.create(
            workflow=execution.workflow,
            version=execution.version,
            user=actor if getattr(actor, "pk", None) else execution.user,
            inputs=execution.inputs,
            retry_of=execution,
            parent_step=execution.parent_step,
            depth=execution.depth,
            metadata={"retry_of": str(execution.pk), "queue": (execution.metadata or {}).get("queue")},
        )
        reused = [
            StepExecution(
                execution=retry,
                node_id=step.node_id,
                node_type=step.node_type,
                attempt=1,
                status=S.SUCCEEDED,
                input=step.input,
                output=step.output,
                started_at=step.started_at,
                finished_at=step.finished_at,
                duration_ms=step.duration_ms,
                idempotency_key=_key(retry.pk, step.node_id, 1),
                state={"reused_from": str(step.pk)},
            )
            for step in _latest_steps(execution).values()
            if step.status == S.SUCCEEDED
        ]
        StepExecution.objects.bulk_create(reused)
    event_record(
        type="workflow.execution.retried",
        source="workflows",
        actor=actor,
        resource=retry,
        payload={"retry_of": str(execution.pk), "reused_steps": len(reused)},
    )
    _admit(retry.pk)
    return execution_refresh(retry)


def _step_lost(lease_expires_at, started_at, node: dict, now) -> bool:
    """A running step's worker died (its lease ran out), or its handler hangs while its heartbeat
    goes on: past timeout + grace, when Celery's time limits would have ended a healthy task."""
    if lease_expires_at is not None and lease_expires_at < now:
        return True
    limit = timedelta(seconds=step_timeout(node) + settings.WORKFLOWS_LEASE_GRACE_SECONDS)
    return started_at is not None and started_at + limit < now


def _lost_steps(now, batch: int) -> list[tuple]:
    """(step id, execution id) of at most `batch` lost running steps of active executions."""
    running = StepExecution.objects.filter(execution__status__in=ACTIVE_EXECUTION_STATUSES, status=S.RUNNING)
    lost = list(running.filter(lease_expires_at__lt=now).values_list("pk", "execution_id")[:batch])
    # A node's timeout is in its graph, not in the row: check each step running longer than the
    # grace here (few: one per busy worker slot, plus orphans).
    grace = timedelta(seconds=settings.WORKFLOWS_LEASE_GRACE_SECONDS)
    longer = running.exclude(lease_expires_at__lt=now).filter(started_at__lt=now - grace)
    for step_id, execution_id, version_id, node_id, lease, started_at in longer.values_list(
        "pk", "execution_id", "execution__version_id", "node_id", "lease_expires_at", "started_at"
    ):
        if len(lost) < batch and _step_lost(lease, started_at, version_graph(version_id).nodes[node_id], now):
            lost.append((step_id, execution_id))
    return lost


#: steps whose message may be lost, re-sent per reaper pass (the reaper runs every few seconds)
RESEND_BATCH = 100


def reap(*, now=None, batch: int = 500) -> dict:
    """Recover what crashes and lost messages left behind; see the module docstring."""
    now = now or timezone.now()
    counts = {"timed_out": 0, "redispatched": 0, "lost": 0, "resent": 0, "woken": 0, "approvals_timed_out": 0}
    overdue = WorkflowExecution.objects.filter(status__in=ACTIVE_EXECUTION_STATUSES, deadline__lt=now)
    for execution_id in list(overdue.values_list("pk", flat=True)[:batch]):
        with transaction.atomic():
            execution = _lock(execution_id)
            if not execution.finished:
                _finish(execution, E.TIMED_OUT, error="The run exceeded its deadline.")
                counts["timed_out"] += 1
    active = Q(execution__status__in=ACTIVE_EXECUTION_STATUSES)
    for step_id, execution_id in _lost_steps(now, batch):
        with transaction.atomic():
            execution = _lock(execution_id)
            step = StepExecution.objects.select_for_update().get(pk=step_id)
            node = _graph(execution).nodes[step.node_id]
            if step.status != S.RUNNING or not _step_lost(step.lease_expires_at, step.started_at, node, now):
                continue
            if step.dispatches > settings.WORKFLOWS_MAX_REDISPATCHES:
                step.lease_expires_at = None
                message = f"The step lost its worker or overran its timeout {step.dispatches} times."
                retry = _step_failed(execution, step, node, StepError(message, kind="timeout"))
                _advance(execution, retry or step)
                counts["lost"] += 1
                continue
            transition(step, S.QUEUED)
            step.lease_expires_at = None
            step.save(update_fields=["status", "lease_expires_at", "updated_at"])
            _dispatch_step(step, node)
            counts["redispatched"] += 1
    cutoff = now - timedelta(seconds=settings.WORKFLOWS_REDISPATCH_QUEUED_AFTER_SECONDS)
    stale = StepExecution.objects.filter(active, status=S.QUEUED).filter(
        Q(not_before__isnull=True, updated_at__lt=cutoff) | Q(not_before__lt=cutoff)
    )
    # Bounded: a step merely waiting in a long queue gets at most one more message per period
    # (a duplicate is a no-op: the claim is conditional), and at most RESEND_BATCH per pass.
    for step in list(stale.select_related("execution").order_by("updated_at")[: min(batch, RESEND_BATCH)]):
        if StepExecution.objects.filter(pk=step.pk, status=S.QUEUED).update(not_before=now):
            _dispatch_step(step, _graph(step.execution).nodes[step.node_id])  # the node's time limits too
            counts["resent"] += 1
    due = StepExecution.objects.filter(active, status=S.WAITING, wake_at__lte=now)
    for step_id, kind, execution_id in list(due.values_list("pk", "wait_kind", "execution_id")[:batch]):
        if kind == "delay":
            counts["woken"] += step_wake(step_id, now=now)
        elif kind == "approval":
            with transaction.atomic():
                execution = _lock(execution_id)
                step = StepExecution.objects.select_for_update().get(pk=step_id)
                if step.status != S.WAITING or execution.finished:
                    continue
                node = _graph(execution).nodes[step.node_id]
                error = StepError("Nobody approved or rejected in time.", kind="timeout", retryable=False)
                retry = _step_failed(execution, step, node, error)
                _advance(execution, retry or step)
                counts["approvals_timed_out"] += 1
    # A child ended, but the message telling its parent step may be lost: the step still waits
    # and has not changed for a while. Telling it again is harmless (a map re-reads its children).
    unheard = WorkflowExecution.objects.filter(
        status__in=TERMINAL_EXECUTION_STATUSES,
        finished_at__lt=cutoff,
        parent_step__status=S.WAITING,
        parent_step__updated_at__lt=cutoff,
        parent_step__execution__status__in=ACTIVE_EXECUTION_STATUSES,
    )
    parents = dict(unheard.values_list("parent_step_id", "pk")[:batch])  # one child per step
    for child_id in parents.values():
        child_finished(child_id)
    counts["children"] = len(parents)
    counts["admitted"] = admit_queued(batch)
    return counts
