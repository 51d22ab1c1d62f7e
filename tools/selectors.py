"""Reads over tools: catalogue facets and execution statistics, computed by the database."""

from datetime import timedelta

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from agentmesh.core.aggregates import percentiles
from agentmesh.core.selectors import child_records_visible_to

from .models import ExecutionStatus, Tool, ToolExecution


def category_counts(tools: QuerySet) -> list[dict]:
    return list(
        tools.exclude(category="").values("category").annotate(count=Count("id")).order_by("category")
    )


def tool_stats(*, tool: Tool, days: int = 30) -> dict:
    """Calls, success rate, duration percentiles, errors by kind and calls per day over
    the last `days` days; test runs excluded."""
    since = timezone.now() - timedelta(days=days)
    executions = ToolExecution.objects.filter(tool=tool, is_test=False, created_at__gte=since)
    finished = executions.exclude(status__in=[ExecutionStatus.QUEUED, ExecutionStatus.RUNNING])
    totals = finished.aggregate(
        calls=Count("id"),
        succeeded=Count("id", filter=Q(status=ExecutionStatus.SUCCEEDED)),
        failed=Count("id", filter=Q(status=ExecutionStatus.FAILED)),
        timed_out=Count("id", filter=Q(status=ExecutionStatus.TIMED_OUT)),
    )
    per_day = (
        finished.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(
            calls=Count("id"),
            succeeded=Count("id", filter=Q(status=ExecutionStatus.SUCCEEDED)),
        )
        .order_by("day")
    )
    errors = (
        finished.exclude(error_kind="").values("error_kind").annotate(count=Count("id")).order_by("-count")
    )
    calls = totals["calls"]
    return {
        "tool_id": tool.pk,
        "days": days,
        **totals,
        "in_progress": executions.filter(
            status__in=[ExecutionStatus.QUEUED, ExecutionStatus.RUNNING]
        ).count(),
        "success_rate": round(totals["succeeded"] / calls, 4) if calls else None,
        "duration_ms": percentiles(finished, "duration_ms", (0.5, 0.95)),
        "errors_by_kind": {row["error_kind"]: row["count"] for row in errors},
        "per_day": [
            {"day": row["day"], "calls": row["calls"], "succeeded": row["succeeded"]} for row in per_day
        ],
    }


def executions_visible_to(user, executions: QuerySet | None = None) -> QuerySet:
    """Executions the user started, and every execution of a tool the user owns (admins: all).
    Sharing a tool does not share other users' arguments and results."""
    executions = ToolExecution.objects.all() if executions is None else executions
    return child_records_visible_to(user, executions, parent="tool")


def unfinished_executions(tools) -> QuerySet:
    """Executions of `tools` (objects or ids) still queued or running: they block a delete."""
    return ToolExecution.objects.filter(
        tool__in=tools, status__in=[ExecutionStatus.QUEUED, ExecutionStatus.RUNNING]
    )
