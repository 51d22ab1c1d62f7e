"""GET /system/stats: counts across the system, each an aggregate in the database — a fixed
number of queries whatever the volume of data."""

import logging
from datetime import date, datetime, time, timedelta

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

logger = logging.getLogger(__name__)

SERIES_DAYS = (7, 30)


def _by(queryset, field: str) -> dict[str, int]:
    return {str(row[field]): row["n"] for row in queryset.order_by().values(field).annotate(n=Count("pk"))}


def _counts(queryset, field: str) -> dict:
    by = _by(queryset, field)
    return {"total": sum(by.values()), f"by_{field}": by}


def _series(rows: list[dict], *, today: date, days: int) -> list[dict]:
    """One entry per day (oldest first, missing days as zeros) from {"day","status","count"} rows."""
    per_day: dict[date, dict[str, int]] = {}
    for row in rows:
        day = row["day"]
        if isinstance(day, str):  # some backends give text for a truncated date
            day = date.fromisoformat(day)
        per_day.setdefault(day, {})[str(row["status"])] = row["count"]
    out = []
    for offset in range(days - 1, -1, -1):
        day = today - timedelta(days=offset)
        statuses = per_day.get(day, {})
        out.append({"day": day, "total": sum(statuses.values()), "by_status": statuses})
    return out


def table_sizes() -> dict:
    """Size of each table: PostgreSQL pg_total_relation_size (with indexes and TOAST) and the
    planner's row estimate; SQLite the dbstat virtual table's page bytes, or exact row counts
    where SQLite is built without dbstat. One query (two without dbstat)."""
    vendor = connection.vendor
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute(
                """
                SELECT c.relname, pg_total_relation_size(c.oid), GREATEST(c.reltuples, 0)::bigint
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema()
                ORDER BY 2 DESC, 1
                """
            )
            tables = [{"table": t, "bytes": int(b), "rows": int(r)} for t, b, r in cursor.fetchall()]
            return {"method": "pg_total_relation_size", "tables": tables}
        if vendor == "sqlite":
            try:
                cursor.execute(
                    """
                    SELECT s.tbl_name, SUM(d.pgsize) FROM dbstat d JOIN sqlite_master s ON s.name = d.name
                    WHERE s.tbl_name NOT LIKE 'sqlite_%'
                    GROUP BY s.tbl_name ORDER BY 2 DESC, 1
                    """
                )
                tables = [{"table": t, "bytes": int(b or 0), "rows": None} for t, b in cursor.fetchall()]
                return {"method": "dbstat", "tables": tables}
            except Exception:  # built without SQLITE_ENABLE_DBSTAT_VTAB
                logger.debug("SQLite has no dbstat: counting rows", exc_info=True)
        names = sorted(connection.introspection.table_names(cursor))
        if not names:
            return {"method": "row_count", "tables": []}
        quote = connection.ops.quote_name
        cursor.execute(
            " UNION ALL ".join(f"SELECT %s, COUNT(*) FROM {quote(name)}" for name in names),  # noqa: S608 - names from introspection
            names,
        )
        tables = [{"table": t, "bytes": None, "rows": int(n)} for t, n in cursor.fetchall()]
        return {"method": "row_count", "tables": sorted(tables, key=lambda t: (-t["rows"], t["table"]))}


def system_stats() -> dict:
    """Users by role, agents by status, tools by type, workflows by status, runs and executions
    per day by status (7 and 30 days), tokens and cost totals, table sizes."""
    from agents.models import Agent
    from agents.selectors import runs_by_status, runs_per_day_by_status, runs_usage_totals
    from tools.models import Tool
    from workflows.models import Workflow
    from workflows.selectors import (
        executions_by_status,
        executions_per_day_by_status,
        executions_usage_totals,
    )

    now = timezone.now()
    today = timezone.localdate(now)
    since = timezone.make_aware(datetime.combine(today - timedelta(days=max(SERIES_DAYS) - 1), time.min))
    users = get_user_model().objects.all()
    user_totals = users.aggregate(
        total=Count("pk"),
        active=Count("pk", filter=Q(is_active=True)),
        superusers=Count("pk", filter=Q(is_superuser=True)),
    )
    run_rows = runs_per_day_by_status(since=since)
    execution_rows = executions_per_day_by_status(since=since)
    runs_all = runs_by_status()
    executions_all = executions_by_status()

    def per_day(rows):
        return {f"last_{days}_days": _series(rows, today=today, days=days) for days in SERIES_DAYS}

    runs_usage = runs_usage_totals()
    executions_usage = executions_usage_totals()
    return {
        "generated_at": now,
        "users": {**user_totals, "by_role": _by(users, "role")},
        "agents": _counts(Agent.objects.all(), "status"),
        "tools": _counts(Tool.objects.all(), "type"),
        "workflows": _counts(Workflow.objects.all(), "status"),
        "agent_runs": {"total": sum(runs_all.values()), "by_status": runs_all, **per_day(run_rows)},
        "workflow_executions": {
            "total": sum(executions_all.values()),
            "by_status": executions_all,
            **per_day(execution_rows),
        },
        "usage": {
            "agent_runs": runs_usage,
            "workflow_executions": executions_usage,
        },
        "database": {"vendor": connection.vendor, **table_sizes()},
    }
