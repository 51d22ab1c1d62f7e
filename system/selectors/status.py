"""GET /system/status: what the running cluster looks like, read in bounded time.

`system_status(detail=...)` is the one public entry point (the endpoint, the admin dashboard and
the built-in system checks use it). Components:

- database — a round trip (`SELECT 1`), in the calling thread (its connection is the caller's);
- cache, broker, workers, queues — network probes, each in a daemon thread with a deadline
  (SYSTEM_STATUS_PROBE_TIMEOUT_SECONDS): one that hangs is reported `unknown` and the answer
  comes anyway; while it still hangs, later collections do not start another one;
- workers — alive by a Celery broadcast (ping, then stats, active tasks and queues of the
  workers that answered); the filesystem broker of the embedded mode supports the broadcast
  (kombu's filesystem transport implements fanout exchanges). When the broadcast itself fails,
  the WorkerHeartbeat rows younger than SYSTEM_WORKER_HEARTBEAT_STALE_SECONDS stand in;
- beat — its last tick (BeatTick, written when beat publishes the tick task and when a worker
  runs it);
- queues — the depth of the default queue, SYSTEM_STATUS_QUEUES, routed queues and the queues
  the live workers consume (Redis list lengths, AMQP passive declares, files of the
  filesystem broker — whatever kombu's `queue_declare(passive=True)` asks the broker);
- runs — agent runs queued/running and workflow executions queued/running/waiting.

The result is computed at most once per SYSTEM_STATUS_CACHE_SECONDS in each process (kept in
the process, so a cache outage cannot slow the status down).
"""

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.core.cache import caches
from django.db import connection
from django.utils import timezone

from agentmesh.celery import app as celery_app

from ..models import BeatTick, WorkerHeartbeat

logger = logging.getLogger(__name__)

UP, DOWN, UNKNOWN = "up", "down", "unknown"
COMPONENTS = ("database", "cache", "broker", "workers", "beat", "queues", "runs")
# A component down or unknown makes the whole system "down" for these, "degraded" for the others.
CRITICAL = ("database", "broker")

_URL_CREDENTIALS = re.compile(r"(//[^/@\s:]*):[^@\s/]*@")


def _safe_error(exc: BaseException) -> str:
    """`Type: message` without any password a connection URL in the message might carry."""
    text = _URL_CREDENTIALS.sub(r"\1:***@", f"{type(exc).__name__}: {exc}")
    return text[:300]


# --- running probes with a deadline --------------------------------------------------------
_inflight: dict[str, threading.Thread] = {}
_inflight_lock = threading.Lock()


def _run_probe(probe: Callable[[], dict], box: dict) -> None:
    started = time.perf_counter()
    try:
        result = {"status": UP, **(probe() or {})}
    except Exception as exc:  # a probe reports its failure, it never raises
        logger.warning("status probe failed: %s", _safe_error(exc))
        result = {"status": DOWN, "error": _safe_error(exc)}
    result.setdefault("latency_ms", round((time.perf_counter() - started) * 1000, 2))
    box["result"] = result


def run_probes(probes: dict[str, Callable[[], dict]], *, timeout: float) -> dict[str, dict]:
    """Run each probe in a daemon thread and wait for all of them at most `timeout` seconds.

    A probe that has not answered by then is `unknown`; its thread is left to finish on its
    own, and until it does, the same probe is not started again (so a hanging component does
    not pile up threads)."""
    started: dict[str, tuple[threading.Thread, dict]] = {}
    results: dict[str, dict] = {}
    for name, probe in probes.items():
        with _inflight_lock:
            previous = _inflight.get(name)
            if previous is not None and previous.is_alive():
                results[name] = {"status": UNKNOWN, "error": "the previous probe has not returned yet"}
                continue
            box: dict = {}
            thread = threading.Thread(
                target=_run_probe, args=(probe, box), name=f"status-probe-{name}", daemon=True
            )
            _inflight[name] = thread
        thread.start()
        started[name] = (thread, box)
    deadline = time.monotonic() + timeout
    for name, (thread, box) in started.items():
        thread.join(max(0.0, deadline - time.monotonic()))
        results[name] = box.get("result") or {
            "status": UNKNOWN,
            "error": f"no answer within {timeout:g} s",
        }
    return results


# --- the probes ------------------------------------------------------------------------------
def _database() -> dict:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return {"status": DOWN, "error": _safe_error(exc), "vendor": connection.vendor}
    return {
        "status": UP,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        "vendor": connection.vendor,
    }


def _cache() -> dict:
    cache = caches["default"]
    key = f"system:status:{uuid.uuid4().hex}"
    cache.set(key, "ok", timeout=5)
    if cache.get(key) != "ok":
        raise RuntimeError("the cache did not return the value just written")
    cache.delete(key)
    return {"backend": type(cache).__name__}


def broker_transport() -> str:
    """The broker's transport name (redis, amqp, filesystem, …): never its URL."""
    url = str(celery_app.conf.broker_write_url or "")
    return url.split("://", 1)[0].split("+", 1)[0] if "://" in url else (url or "unknown")


def _connection():
    return celery_app.connection_for_write()


def _ensure(conn) -> None:
    conn.ensure_connection(
        max_retries=1, interval_start=0, interval_step=0, timeout=settings.SYSTEM_STATUS_PROBE_TIMEOUT_SECONDS
    )


def _broker() -> dict:
    with _connection() as conn:
        _ensure(conn)
        return {"transport": conn.transport.driver_type}


def configured_queues() -> list[str]:
    """The default queue, SYSTEM_STATUS_QUEUES and the queues named in task routes."""
    names = [celery_app.conf.task_default_queue or "celery", *settings.SYSTEM_STATUS_QUEUES]
    for queue in celery_app.conf.task_queues or ():
        names.append(getattr(queue, "name", str(queue)))
    routes = celery_app.conf.task_routes
    for route in (routes.values() if isinstance(routes, dict) else []) if routes else []:
        if isinstance(route, dict) and route.get("queue"):
            names.append(str(route["queue"]))
    return list(dict.fromkeys(n for n in names if n))


def queue_depths(conn, names: list[str]) -> list[dict]:
    """Messages waiting in each queue, by a passive declare on a channel of its own (a queue
    the broker does not know is empty: Redis has no list for an empty queue)."""
    depths = []
    for name in names:
        channel = conn.channel()
        try:
            depth = channel.queue_declare(queue=name, passive=True).message_count
        except Exception as exc:
            if "404" not in str(exc) and "NOT_FOUND" not in str(exc).upper():
                raise
            depth = 0
        finally:
            try:
                channel.close()
            except Exception:  # an AMQP 404 already closed it
                logger.debug("closing a status channel failed", exc_info=True)
        depths.append({"name": name, "depth": int(depth or 0)})
    return depths


def _queues() -> dict:
    with _connection() as conn:
        _ensure(conn)
        return {"queues": queue_depths(conn, configured_queues())}


def _workers() -> dict:
    """Ping every worker, then ask the ones that answered for stats, active tasks and queues
    (those three return as soon as every pinged worker replied)."""
    reply = settings.SYSTEM_STATUS_WORKER_REPLY_SECONDS
    with _connection() as conn:
        _ensure(conn)
        pongs = celery_app.control.ping(timeout=reply, connection=conn) or []
        names = sorted({name for item in pongs for name in item})
        workers = []
        extra_queues: list[dict] = []
        if names:
            inspect = celery_app.control.inspect(
                destination=names, limit=len(names), timeout=reply, connection=conn
            )
            stats = inspect.stats() or {}
            active = inspect.active() or {}
            queues = inspect.active_queues() or {}
            for name in names:
                info = stats.get(name) or {}
                pool = info.get("pool") or {}
                concurrency = pool.get("max-concurrency")
                workers.append(
                    {
                        "name": name,
                        "host": name.partition("@")[2] or name,
                        "pid": info.get("pid"),
                        "concurrency": concurrency if isinstance(concurrency, int) else None,
                        "active_tasks": len(active.get(name) or []),
                        "queues": sorted(
                            {q.get("name", "") for q in queues.get(name) or [] if q.get("name")}
                        ),
                        "source": "ping",
                    }
                )
            known = set(configured_queues())
            consumed = sorted({q for w in workers for q in w["queues"]} - known)
            extra_queues = queue_depths(conn, consumed)
    return {
        "status": UP if workers else DOWN,
        "count": len(workers),
        "workers": workers,
        "queues": extra_queues,
    }


def _heartbeat_workers(now) -> list[dict]:
    stale = now - timedelta(seconds=settings.SYSTEM_WORKER_HEARTBEAT_STALE_SECONDS)
    return [
        {"hostname": hostname, "seen_at": seen_at}
        for hostname, seen_at in WorkerHeartbeat.objects.filter(seen_at__gte=stale)
        .order_by("-seen_at")
        .values_list("hostname", "seen_at")[:100]
    ]


def _beat(now) -> dict:
    tick = BeatTick.objects.filter(key="beat").first()
    last = max((t for t in (tick.sent_at, tick.ran_at) if t), default=None) if tick else None
    age = max(0.0, (now - last).total_seconds()) if last else None  # a tick may follow `now`
    return {
        "status": UP if age is not None and age <= settings.SYSTEM_BEAT_SILENT_SECONDS else DOWN,
        "last_tick_at": last,
        "age_seconds": round(age, 3) if age is not None else None,
        "last_run_at": tick.ran_at if tick else None,
        "lag_ms": tick.lag_ms if tick else None,
        "ticks": tick.ticks if tick else 0,
    }


def _runs() -> dict:
    from agents.models import RunStatus
    from agents.selectors import runs_by_status
    from workflows.models import ExecutionStatus
    from workflows.selectors import executions_by_status

    run_states = (RunStatus.QUEUED, RunStatus.RUNNING)
    execution_states = (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING, ExecutionStatus.WAITING)
    runs = runs_by_status(statuses=run_states)
    executions = executions_by_status(statuses=execution_states)
    return {
        "status": UP,
        "agent_runs": {str(s): runs.get(s, 0) for s in run_states},
        "workflow_executions": {str(s): executions.get(s, 0) for s in execution_states},
    }


def _guarded_db(read: Callable[[], dict]) -> dict:
    try:
        return read()
    except Exception as exc:
        return {"status": UNKNOWN, "error": _safe_error(exc)}


# --- collection ------------------------------------------------------------------------------
def collect_status() -> dict:
    """Every component with its details, freshly measured (no cache)."""
    now = timezone.now()
    probed = run_probes(
        {"cache": _cache, "broker": _broker, "workers": _workers, "queues": _queues},
        timeout=settings.SYSTEM_STATUS_PROBE_TIMEOUT_SECONDS,
    )
    components: dict[str, dict] = {"database": _database()}
    database_up = components["database"]["status"] == UP
    components["cache"] = probed["cache"]
    components["broker"] = probed["broker"]

    workers = probed["workers"]
    heartbeats = _guarded_db(lambda: {"rows": _heartbeat_workers(now)}).get("rows", []) if database_up else []
    if workers["status"] == UP or "error" not in workers:
        workers.setdefault("workers", [])
        workers.setdefault("count", len(workers["workers"]))
    else:  # the broadcast failed or hung: the heartbeat table stands in
        workers = {
            **workers,
            "status": UP if heartbeats else workers["status"],
            "count": len(heartbeats),
            "workers": [
                {
                    "name": row["hostname"],
                    "host": row["hostname"],
                    "pid": None,
                    "concurrency": None,
                    "active_tasks": None,
                    "queues": [],
                    "source": "heartbeat",
                }
                for row in heartbeats
            ],
        }
    workers["heartbeats"] = heartbeats
    extra_queues = workers.pop("queues", []) or []
    components["workers"] = workers

    components["beat"] = _guarded_db(lambda: _beat(now)) if database_up else {"status": UNKNOWN}
    queues = probed["queues"]
    if "queues" in queues:
        seen = {q["name"] for q in queues["queues"]}
        queues["queues"] = queues["queues"] + [q for q in extra_queues if q["name"] not in seen]
        backlog = settings.SYSTEM_ALERT_QUEUE_BACKLOG
        queues["backlog_threshold"] = backlog
        if any(q["depth"] > backlog for q in queues["queues"]):
            queues["status"] = "backlog"
    components["queues"] = queues
    components["runs"] = _guarded_db(_runs) if database_up else {"status": UNKNOWN}

    return {"status": overall(components), "checked_at": now, "components": components}


def overall(components: dict[str, dict]) -> str:
    """`down` when the database or the broker is not up, `degraded` when any other component is
    not up (no live worker, beat silent, cache down, a queue over its backlog), else `ok`."""
    if any(components[name]["status"] != UP for name in CRITICAL if name in components):
        return "down"
    if any(c["status"] != UP for c in components.values()):
        return "degraded"
    return "ok"


def summary_of(status: dict) -> dict:
    """What every authenticated user may see: the overall state and each component's state."""
    return {
        "status": status["status"],
        "checked_at": status["checked_at"],
        "cached": status.get("cached", False),
        "components": {name: {"status": c["status"]} for name, c in status["components"].items()},
    }


_cached: dict = {"at": float("-inf"), "value": None}
_cache_lock = threading.Lock()


def status_cache_clear() -> None:
    """Forget the cached status of this process (tests; the next read measures again)."""
    with _cache_lock:
        _cached.update(at=float("-inf"), value=None)


def system_status(*, detail: bool, max_age: float | None = None) -> dict:
    """The system's status: overall `ok | degraded | down` and each component — with every
    detail for admins (`detail=True`), the states only otherwise. Measured at most once per
    `max_age` (SYSTEM_STATUS_CACHE_SECONDS) seconds in this process; concurrent callers wait
    for one measurement rather than each making their own."""
    max_age = settings.SYSTEM_STATUS_CACHE_SECONDS if max_age is None else max_age
    with _cache_lock:
        now = time.monotonic()
        if _cached["value"] is not None and now - _cached["at"] < max_age:
            value = {**_cached["value"], "cached": True}
        else:
            value = {**collect_status(), "cached": False}
            _cached.update(at=time.monotonic(), value=value)
    return value if detail else summary_of(value)


# --- alerts ----------------------------------------------------------------------------------
def system_alerts(*, limit: int = 200) -> dict:
    """The built-in checks' last results and every open (firing or acknowledged) alert — the
    checks' own and those of the observability alert rules and manual alerts. Two queries."""
    from observability.selectors import open_alerts

    from ..models import SystemCheck
    from ..services.status import CHECKS

    rows = {row.key: row for row in SystemCheck.objects.all()}
    checks = []
    for key, check in CHECKS.items():
        row = rows.get(key)
        checks.append(
            {
                "key": key,
                "title": check.title,
                "severity": check.severity,
                "state": row.state if row else "unknown",
                "value": row.value if row else None,
                "threshold": row.threshold if row else check.threshold(),
                "message": row.message if row else "",
                "checked_at": row.checked_at if row else None,
                "alert_id": row.alert_id if row else None,
            }
        )
    alerts = []
    for alert in open_alerts(limit=limit):
        source = (
            "rule" if alert.rule_id else ("system" if alert.dedup_key.startswith("system:") else "manual")
        )
        alerts.append(
            {
                "id": alert.pk,
                "title": alert.title,
                "message": alert.message,
                "severity": alert.severity,
                "state": alert.state,
                "source": source,
                "rule_id": alert.rule_id,
                "rule_name": alert.rule.name if alert.rule_id else None,
                "dedup_key": alert.dedup_key,
                "value": alert.value,
                "fired_at": alert.fired_at,
                "last_seen_at": alert.last_seen_at,
                "acknowledged_at": alert.acknowledged_at,
            }
        )
    evaluated = [c["checked_at"] for c in checks if c["checked_at"]]
    return {
        "evaluated_at": max(evaluated) if evaluated else None,
        "firing": sum(1 for a in alerts if a["state"] == "firing"),
        "checks": checks,
        "alerts": alerts,
    }


# --- the admin index dashboard ---------------------------------------------------------------
def _admin_url(instance) -> str | None:
    from django.urls import NoReverseMatch, reverse

    opts = instance._meta
    try:
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[instance.pk])
    except NoReverseMatch:
        return None


def admin_dashboard(*, hours: int = 24, failing: int = 10) -> dict:
    """What the admin index shows above the app list: agent runs and workflow executions of the
    last `hours` by status, the latest failing ones, the open alerts, workers, beat and queue
    depths (from `system_status`). A fixed number of queries."""
    from agents.selectors import runs_by_status, runs_failed_recently
    from observability.selectors import open_alerts
    from workflows.selectors import executions_by_status, executions_failed_recently

    since = timezone.now() - timedelta(hours=hours)
    runs = runs_by_status(since=since)
    executions = executions_by_status(since=since)
    status = system_status(detail=True)
    return {
        "hours": hours,
        "runs": {"total": sum(runs.values()), "by_status": dict(sorted(runs.items()))},
        "executions": {"total": sum(executions.values()), "by_status": dict(sorted(executions.items()))},
        "failed_runs": [
            {"object": run, "name": run.agent_name or str(run.pk), "url": _admin_url(run)}
            for run in runs_failed_recently(since=since, limit=failing)
        ],
        "failed_executions": [
            {
                "object": execution,
                "name": execution.workflow_name or str(execution.pk),
                "url": _admin_url(execution),
            }
            for execution in executions_failed_recently(since=since, limit=failing)
        ],
        "alerts": [{"object": alert, "url": _admin_url(alert)} for alert in open_alerts(limit=failing)],
        "status": status,
    }
