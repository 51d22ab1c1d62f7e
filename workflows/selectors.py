"""Reads over workflows: execution statistics computed by the database, and which executions
each user may see."""

from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from agentmesh.core.aggregates import percentiles
from agentmesh.core.selectors import child_records_visible_to

from .models import (
    TERMINAL_EXECUTION_STATUSES,
    ExecutionStatus,
    StepExecution,
    StepStatus,
    Workflow,
    WorkflowExecution,
)

HOT_SPOTS = 10


def workflow_stats(*, workflow: Workflow, days: int = 30) -> dict:
    """Executions by status, p50/p95 duration, the nodes that fail most, tokens and cost over
    the last `days` days — a fixed number of queries whatever the volume."""
    since = timezone.now() - timedelta(days=days)
    executions = WorkflowExecution.objects.filter(workflow=workflow, created_at__gte=since)
    totals = executions.aggregate(
        executions=Count("id"),
        input_tokens=Coalesce(Sum("input_tokens"), 0),
        output_tokens=Coalesce(Sum("output_tokens"), 0),
        cost_usd=Sum("cost_usd"),
    )
    by_status = executions.values("status").annotate(count=Count("id")).order_by("status")
    failures = (
        StepExecution.objects.filter(
            execution__workflow=workflow,
            execution__created_at__gte=since,
            status__in=(StepStatus.FAILED, StepStatus.TIMED_OUT),
        )
        .values("node_id")
        .annotate(
            failures=Count("id"),
            timeouts=Count("id", filter=Q(status=StepStatus.TIMED_OUT)),
        )
        .order_by("-failures", "node_id")[:HOT_SPOTS]
    )
    return {
        "workflow_id": workflow.pk,
        "days": days,
        "executions": totals["executions"],
        "by_status": {row["status"]: row["count"] for row in by_status},
        "duration_ms": percentiles(
            executions.filter(status__in=TERMINAL_EXECUTION_STATUSES), "duration_ms", (0.5, 0.95)
        ),
        "step_failures": [
            {"node_id": row["node_id"], "failures": row["failures"], "timeouts": row["timeouts"]}
            for row in failures
        ],
        "input_tokens": totals["input_tokens"],
        "output_tokens": totals["output_tokens"],
        "cost_usd": totals["cost_usd"] or Decimal("0"),
    }


def executions_visible_to(user, executions: QuerySet | None = None) -> QuerySet:
    """Executions the user started, and every execution of a workflow the user owns (admins:
    all). Sharing a workflow does not share other users' executions of it."""
    executions = WorkflowExecution.objects.all() if executions is None else executions
    return child_records_visible_to(user, executions, parent="workflow")


def unfinished_executions(workflows) -> QuerySet:
    """Executions of `workflows` (objects or ids) still queued, running or waiting: they block
    a delete."""
    return WorkflowExecution.objects.filter(workflow__in=workflows).exclude(
        status__in=TERMINAL_EXECUTION_STATUSES
    )


def _event_id(ts, key: str) -> str:
    return f"{ts.isoformat()}~{key}"


def _parse_event_id(value: str):
    stamp, _, key = (value or "").partition("~")
    try:
        return datetime.fromisoformat(stamp), key
    except ValueError:
        return None


def execution_events(*, execution_id, after: str = "") -> tuple[list[dict], bool]:
    """The execution's story as events derived from its rows, in order: execution.started,
    step.retried / step.started / step.waiting / step.finished, execution.finished. Each has an
    id a client can send back as Last-Event-ID to get only what came after. Returns (events,
    finished)."""
    execution = (
        WorkflowExecution.objects.filter(pk=execution_id)
        .values("status", "started_at", "finished_at", "error", "outputs")
        .first()
    )
    if execution is None:
        return [], True
    rows: list[tuple] = []

    def add(ts, key: str, event: str, data: dict) -> None:
        if ts is not None:
            rows.append((ts, key, event, data))

    add(execution["started_at"], "0", "execution.started", {"execution_id": str(execution_id)})
    steps = StepExecution.objects.filter(execution_id=execution_id).values(
        "pk", "node_id", "attempt", "status", "error", "wait_kind", "created_at", "started_at", "finished_at"
    )
    for step in steps:
        base = {"step_id": str(step["pk"]), "node_id": step["node_id"], "attempt": step["attempt"]}
        if step["attempt"] > 1:
            add(step["created_at"], f"{step['pk']}:0", "step.retried", base)
        add(step["started_at"], f"{step['pk']}:1", "step.started", base)
        if step["status"] == StepStatus.WAITING:
            add(
                step["started_at"],
                f"{step['pk']}:2",
                "step.waiting",
                {**base, "wait_kind": step["wait_kind"]},
            )
        add(
            step["finished_at"],
            f"{step['pk']}:3",
            "step.finished",
            {**base, "status": step["status"], "error": step["error"]},
        )
    finished = execution["status"] in TERMINAL_EXECUTION_STATUSES
    if finished:
        add(
            execution["finished_at"],
            "z",
            "execution.finished",
            {"status": execution["status"], "error": execution["error"], "outputs": execution["outputs"]},
        )
    rows.sort(key=lambda row: (row[0], row[1]))
    last = _parse_event_id(after)
    if last is not None:
        rows = [row for row in rows if (row[0], row[1]) > last]
    events = [{"id": _event_id(ts, key), "event": event, "data": data} for ts, key, event, data in rows]
    return events, finished


# --- System-wide reads (system status and stats, the admin dashboard) -----------------------
def executions_by_status(*, since=None, statuses=None) -> dict[str, int]:
    """Executions per status (created since `since`, or all; only `statuses` if given): one query."""
    executions = (
        WorkflowExecution.objects.all()
        if since is None
        else WorkflowExecution.objects.filter(created_at__gte=since)
    )
    if statuses is not None:
        executions = executions.filter(status__in=statuses)
    return {row["status"]: row["n"] for row in executions.values("status").annotate(n=Count("id")).order_by()}


def executions_per_day_by_status(*, since) -> list[dict]:
    """`{"day", "status", "count"}` rows of the executions created since `since`: one query."""
    return list(
        WorkflowExecution.objects.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day", "status")
        .annotate(count=Count("id"))
        .order_by("day", "status")
    )


def executions_usage_totals() -> dict:
    """Tokens and cost of every execution: one query."""
    totals = WorkflowExecution.objects.aggregate(
        input_tokens=Coalesce(Sum("input_tokens"), 0),
        output_tokens=Coalesce(Sum("output_tokens"), 0),
        cost_usd=Sum("cost_usd"),
    )
    return {**totals, "cost_usd": totals["cost_usd"] or Decimal("0")}


def executions_failed_recently(*, since, limit: int = 10) -> list[WorkflowExecution]:
    """The latest failed or timed-out executions created since `since` (newest first)."""
    return list(
        WorkflowExecution.objects.filter(
            created_at__gte=since, status__in=(ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT)
        )
        .only("id", "workflow_name", "status", "error", "created_at")
        .order_by("-created_at")[:limit]
    )
