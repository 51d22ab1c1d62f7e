import logging
import uuid

from django.core.cache import cache
from django.db import connection
from django.db.models import F
from django.utils import timezone

from agentmesh.celery import app as celery_app

from ..models import WorkerHeartbeat

logger = logging.getLogger(__name__)


def worker_heartbeat_record(*, hostname: str) -> WorkerHeartbeat:
    beat, created = WorkerHeartbeat.objects.get_or_create(
        hostname=hostname, defaults={"seen_at": timezone.now(), "beats": 1}
    )
    if not created:
        WorkerHeartbeat.objects.filter(pk=beat.pk).update(seen_at=timezone.now(), beats=F("beats") + 1)
        beat.refresh_from_db()
    return beat


def _check(name: str, probe) -> dict:
    started = timezone.now()
    try:
        detail = probe() or {}
        state = {"status": "up", **detail}
    except Exception as exc:  # a health probe reports every failure, it never raises
        logger.warning("health check %s failed: %s", name, exc)
        state = {"status": "down", "error": type(exc).__name__}
    state["latency_ms"] = round((timezone.now() - started).total_seconds() * 1000, 2)
    return state


def _database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"vendor": connection.vendor}


def _cache() -> dict:
    key = f"health:{uuid.uuid4().hex}"
    cache.set(key, "ok", timeout=5)
    if cache.get(key) != "ok":
        raise RuntimeError("cache did not return the value just written")
    cache.delete(key)
    return {}


def _broker() -> dict:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
        return {"transport": conn.transport.driver_type}


def health_check() -> dict:
    """State of the database, cache and broker; `status` is `ok` only when all are up."""
    components = {
        name: _check(name, probe)
        for name, probe in (("database", _database), ("cache", _cache), ("broker", _broker))
    }
    healthy = all(c["status"] == "up" for c in components.values())
    return {
        "status": "ok" if healthy else "unavailable",
        "components": components,
        "checked_at": timezone.now(),
    }
