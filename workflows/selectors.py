"""Reads over workflows: execution statistics computed by the database, and which executions
each user may see."""

from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from agentmesh.core.aggregates import percentiles
from agentmesh.core.permissions import is_admin, permitted_queryset

from .models import TERMINAL_EXECUTION_STATUSES, StepExecution, StepStatus, Workflow, WorkflowExecution

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
    """Executions of workflows the user may view, and the executions the user started."""
    executions = WorkflowExecution.objects.all() if executions is None else executions
    if is_admin(user):
        return executions
    if not user or not user.is_authenticated:
        return executions.none()
    visible = permitted_queryset(user, Workflow.objects.all()).values("pk")
    return executions.filter(Q(workflow__in=visible) | Q(user=user))
