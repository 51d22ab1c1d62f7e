"""Reads over agents: run statistics computed by the database, and what each user may see of
runs and conversations."""

from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from agentmesh.core.aggregates import percentiles
from agentmesh.core.selectors import child_records_visible_to

from .models import FINISHED_RUN_STATUSES, Agent, AgentRun, Conversation, RunStatus


def agent_stats(*, agent: Agent, days: int = 30) -> dict:
    """Runs by status and stop reason, p50/p95 duration, tokens, cost, tool calls and runs per
    day over the last `days` days — a fixed number of queries whatever the volume."""
    since = timezone.now() - timedelta(days=days)
    runs = AgentRun.objects.filter(agent=agent, created_at__gte=since)
    totals = runs.aggregate(
        runs=Count("id"),
        input_tokens=Coalesce(Sum("input_tokens"), 0),
        output_tokens=Coalesce(Sum("output_tokens"), 0),
        cost_usd=Sum("cost_usd"),
        tool_calls=Coalesce(Sum("tool_calls"), 0),
        turns=Coalesce(Sum("turns"), 0),
    )
    by_status = runs.values("status").annotate(count=Count("id")).order_by("status")
    by_stop_reason = (
        runs.exclude(stop_reason="").values("stop_reason").annotate(count=Count("id")).order_by("stop_reason")
    )
    per_day = (
        runs.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(
            runs=Count("id"),
            succeeded=Count("id", filter=Q(status=RunStatus.SUCCEEDED)),
            cost_usd=Sum("cost_usd"),
        )
        .order_by("day")
    )
    return {
        "agent_id": agent.pk,
        "days": days,
        "runs": totals["runs"],
        "by_status": {row["status"]: row["count"] for row in by_status},
        "by_stop_reason": {row["stop_reason"]: row["count"] for row in by_stop_reason},
        "duration_ms": percentiles(runs.filter(status__in=FINISHED_RUN_STATUSES), "duration_ms", (0.5, 0.95)),
        "input_tokens": totals["input_tokens"],
        "output_tokens": totals["output_tokens"],
        "cost_usd": totals["cost_usd"] or Decimal("0"),
        "tool_calls": totals["tool_calls"],
        "turns": totals["turns"],
        "per_day": [
            {
                "day": row["day"],
                "runs": row["runs"],
                "succeeded": row["succeeded"],
                "cost_usd": row["cost_usd"] or Decimal("0"),
            }
            for row in per_day
        ],
    }


def runs_visible_to(user, runs: QuerySet | None = None) -> QuerySet:
    """Runs the user started, and every run of an agent the user owns (admins: all). Sharing an
    agent does not share other users' runs of it."""
    runs = AgentRun.objects.all() if runs is None else runs
    return child_records_visible_to(user, runs, parent="agent")


def conversations_visible_to(user, conversations: QuerySet | None = None) -> QuerySet:
    """The user's own conversations, and every conversation with an agent the user owns."""
    conversations = Conversation.objects.all() if conversations is None else conversations
    return child_records_visible_to(user, conversations, parent="agent")


def unfinished_runs(agents) -> QuerySet:
    """Runs of `agents` (objects or ids) still queued or running: they block a delete."""
    return AgentRun.objects.filter(agent__in=agents).exclude(status__in=FINISHED_RUN_STATUSES)


# --- System-wide reads (system status and stats, the admin dashboard) -----------------------
def runs_by_status(*, since=None, statuses=None) -> dict[str, int]:
    """Runs per status (created since `since`, or all; only `statuses` if given): one query."""
    runs = AgentRun.objects.all() if since is None else AgentRun.objects.filter(created_at__gte=since)
    if statuses is not None:
        runs = runs.filter(status__in=statuses)
    return {row["status"]: row["n"] for row in runs.values("status").annotate(n=Count("id")).order_by()}


def runs_per_day_by_status(*, since) -> list[dict]:
    """`{"day", "status", "count"}` rows of the runs created since `since`: one query."""
    return list(
        AgentRun.objects.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day", "status")
        .annotate(count=Count("id"))
        .order_by("day", "status")
    )


def runs_usage_totals() -> dict:
    """Tokens and cost of every run: one query."""
    totals = AgentRun.objects.aggregate(
        input_tokens=Coalesce(Sum("input_tokens"), 0),
        output_tokens=Coalesce(Sum("output_tokens"), 0),
        cost_usd=Sum("cost_usd"),
    )
    return {**totals, "cost_usd": totals["cost_usd"] or Decimal("0")}


def runs_failed_recently(*, since, limit: int = 10) -> list[AgentRun]:
    """The latest failed runs created since `since` (newest first, at most `limit`)."""
    return list(
        AgentRun.objects.filter(created_at__gte=since, status=RunStatus.FAILED)
        .only("id", "agent_name", "status", "error", "created_at")
        .order_by("-created_at")[:limit]
    )
