"""Reads of the metrics area: the live snapshot (GET /system/metrics) and the downsampled
history of the sampled metrics (GET /system/metrics/history)."""

import logging
import os
import socket
import time
from datetime import datetime, timedelta

import psutil
from django.conf import settings
from django.db import connection, models
from django.db.models import Avg, Count, Max, Min
from django.utils import timezone

from agentmesh.celery import app as celery_app
from agentmesh.core.aggregates import percentiles

from .. import worker_control
from ..models import MetricSample

logger = logging.getLogger(__name__)

# The metrics the beat task samples (the history endpoint accepts these names only).
HISTORY_METRICS = {
    "cpu_percent": "Host CPU use, percent.",
    "memory_percent": "Host memory use, percent.",
    "disk_percent": "Use of the disk holding AGENTMESH_VAR_DIR, percent.",
    "load_1m": "Host load average over one minute.",
    "process_rss_bytes": "Resident memory of the process that took the sample (a worker).",
    "db_connections": "Database connections in use (PostgreSQL; not sampled on SQLite).",
    "queue_depth": "Messages waiting in the broker queues, summed.",
    "requests_per_second": "API requests per second over the last minute.",
    "error_rate": "Share of API requests answered 5xx over the last minute (0..1).",
    "latency_p95_ms": "95th percentile API latency over the last minute, ms.",
    "runs_in_flight": "Agent runs and workflow executions running.",
}

_cpu_primed = [False]


def _host() -> dict:
    if _cpu_primed[0]:
        cpu = psutil.cpu_percent(interval=None)  # since this process's previous call
    else:
        cpu = psutil.cpu_percent(interval=0.1)
        _cpu_primed[0] = True
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(settings.VAR_DIR))
    load = psutil.getloadavg()
    return {
        "cpu_percent": cpu,
        "cpu_count": psutil.cpu_count() or 1,
        "memory": {
            "total_bytes": memory.total,
            "available_bytes": memory.available,
            "used_bytes": memory.total - memory.available,
            "percent": memory.percent,
        },
        "disk": {
            "path": str(settings.VAR_DIR),
            "total_bytes": disk.total,
            "used_bytes": disk.used,
            "free_bytes": disk.free,
            "percent": disk.percent,
        },
        "load_1m": load[0],
        "load_5m": load[1],
        "load_15m": load[2],
    }


def this_process() -> dict:
    info = psutil.Process()
    return {
        "role": "api",
        "name": f"{socket.gethostname()}:{os.getpid()}",
        "pid": os.getpid(),
        "rss_bytes": info.memory_info().rss,
        "pool": [],
    }


def worker_processes(timeout: float | None = None) -> list[dict]:
    """Every worker's main and pool process RSS, from the `agentmesh_process_stats` remote-control
    command (system.worker_control): each worker measures its own processes with psutil."""
    timeout = settings.SYSTEM_METRICS_WORKER_TIMEOUT if timeout is None else timeout
    try:
        replies = worker_control.broadcast("agentmesh_process_stats", timeout=timeout) or []
    except Exception as exc:  # the broker is down: the snapshot says so instead of failing
        logger.warning("worker process stats unavailable: %s", exc)
        return []
    out = []
    for reply in replies:
        for name, stats in reply.items():
            if isinstance(stats, dict) and "pid" in stats:
                out.append({"role": "worker", "name": name, **stats})
    return sorted(out, key=lambda p: p["name"])


def database_connections() -> dict:
    """Connections to our database (PostgreSQL: pg_stat_activity); SQLite has no server."""
    if connection.vendor != "postgresql":
        return {"vendor": connection.vendor, "in_use": None, "active": None, "max": None}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE state = 'active'), "
            "current_setting('max_connections')::int FROM pg_stat_activity WHERE datname = current_database()"
        )
        in_use, active, maximum = cursor.fetchone()
    return {"vendor": "postgresql", "in_use": in_use, "active": active, "max": maximum}


def queue_names() -> list[str]:
    names = [celery_app.conf.task_default_queue, *settings.SYSTEM_METRICS_QUEUES]
    return list(dict.fromkeys(names))


def queue_depths() -> list[dict]:
    """Messages waiting in each queue, as the broker counts them (None when it cannot say)."""
    out = []
    try:
        with celery_app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
            channel = conn.default_channel
            for name in queue_names():
                try:
                    depth = channel.queue_declare(queue=name, passive=True).message_count
                except Exception:  # a queue that was never declared (Redis: no list) holds nothing
                    channel = conn.channel()  # the failed declare may have closed the channel
                    depth = 0
                out.append({"name": name, "depth": depth})
    except Exception as exc:
        logger.warning("queue depths unavailable: %s", exc)
        out = [{"name": name, "depth": None} for name in queue_names()]
    return out


def request_rates(*, now: datetime | None = None, seconds: int = 60) -> dict:
    """Rate, error rate and p95 latency of the API requests over the last `seconds`
    (observability's RequestSample rows; this process's pending samples are flushed first)."""
    from observability import buffer
    from observability.models import RequestSample

    if now is None:
        buffer.flush(force=True)
    end = now or timezone.now()
    qs = RequestSample.objects.filter(timestamp__gte=end - timedelta(seconds=seconds), timestamp__lt=end)
    totals = qs.aggregate(count=Count("id"), errors=Count("id", filter=models.Q(status__gte=500)))
    count = totals["count"]
    return {
        "window_seconds": seconds,
        "count": count,
        "rate_per_second": count / seconds,
        "errors": totals["errors"],
        "error_rate": totals["errors"] / count if count else 0.0,
        "p95_ms": percentiles(qs, "duration_ms", (0.95,))["p95"],
    }


def runs_in_flight() -> dict:
    from agents.models import AgentRun, RunStatus
    from workflows.models import ExecutionStatus, WorkflowExecution

    agent_runs = AgentRun.objects.filter(status=RunStatus.RUNNING).count()
    executions = WorkflowExecution.objects.filter(status=ExecutionStatus.RUNNING).count()
    return {"agent_runs": agent_runs, "workflow_executions": executions, "total": agent_runs + executions}


def system_metrics_snapshot(*, include_workers: bool = True) -> dict:
    """Host, processes, database connections, queues, request rates and runs in flight, now."""
    started = time.perf_counter()
    processes = [this_process()]
    if include_workers:
        processes.extend(worker_processes())
    snapshot = {
        "taken_at": timezone.now(),
        "host": _host(),
        "processes": processes,
        "database": database_connections(),
        "queues": queue_depths(),
        "requests": request_rates(),
        "runs_in_flight": runs_in_flight(),
    }
    snapshot["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return snapshot


def sampled_values(snapshot: dict) -> dict[str, float]:
    """The history metrics (HISTORY_METRICS) of a snapshot; those it has no value for are left out."""
    host, requests = snapshot["host"], snapshot["requests"]
    depths = [q["depth"] for q in snapshot["queues"] if q["depth"] is not None]
    values = {
        "cpu_percent": host["cpu_percent"],
        "memory_percent": host["memory"]["percent"],
        "disk_percent": host["disk"]["percent"],
        "load_1m": host["load_1m"],
        "process_rss_bytes": snapshot["processes"][0]["rss_bytes"],
        "db_connections": snapshot["database"]["in_use"],
        "queue_depth": sum(depths) if depths else None,
        "requests_per_second": requests["rate_per_second"],
        "error_rate": requests["error_rate"],
        "latency_p95_ms": requests["p95_ms"],
        "runs_in_flight": snapshot["runs_in_flight"]["total"],
    }
    return {name: float(value) for name, value in values.items() if value is not None}


# --- history --------------------------------------------------------------------------------
class EpochSeconds(models.Func):
    """Whole seconds since 1970 of a datetime column, on SQLite and PostgreSQL."""

    output_field = models.BigIntegerField()

    def as_sqlite(self, compiler, connection, **extra):
        # '%%%%s': the template formatting leaves '%%s', which the SQLite backend turns into '%s'.
        return self.as_sql(
            compiler, connection, template="CAST(strftime('%%%%s', %(expressions)s) AS INTEGER)"
        )

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(
            compiler, connection, template="CAST(FLOOR(EXTRACT(EPOCH FROM %(expressions)s)) AS BIGINT)"
        )

    def as_mysql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="CAST(UNIX_TIMESTAMP(%(expressions)s) AS SIGNED)")


def metric_history(*, metric: str, since: datetime, until: datetime, step: int) -> list[dict]:
    """Samples of `metric` in [since, until), downsampled in the database into buckets of `step`
    seconds (aligned on the epoch): each bucket's start, average, minimum, maximum and count."""
    bucket = models.ExpressionWrapper(
        EpochSeconds("taken_at") / models.Value(step), output_field=models.BigIntegerField()
    )
    rows = (
        MetricSample.objects.filter(metric=metric, taken_at__gte=since, taken_at__lt=until)
        .annotate(bucket=bucket)
        .values("bucket")
        .annotate(avg=Avg("value"), min=Min("value"), max=Max("value"), count=Count("id"))
        .order_by("bucket")
    )
    tz = timezone.get_current_timezone()
    return [
        {
            "start": datetime.fromtimestamp(row["bucket"] * step, tz=tz),
            "avg": row["avg"],
            "min": row["min"],
            "max": row["max"],
            "count": row["count"],
        }
        for row in rows
    ]
