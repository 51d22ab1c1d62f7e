"""Worker and process control: POST /system/restart/{service} and POST /system/cache/clear.

Each request acts in the process that takes it and, where the service lives in the workers too,
in every worker through a Celery remote-control broadcast (system.worker_control); the replies
are kept on a `ControlRequest` row with what this process did, and the request is audited.
"""

import logging
import os
import socket
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import connections

from agentmesh.core.audit import audited
from agentmesh.core.exceptions import ServiceValidationError

from .. import worker_control
from ..models import ControlKind, ControlRequest
from ..signals import runtime_config_reload

logger = logging.getLogger(__name__)

RESTART_SERVICES = {
    "workers": "Restart the pool processes of every Celery worker (`pool_restart`; needs "
    "CELERY_WORKER_POOL_RESTARTS on the workers), or with mode `shutdown` stop the workers warmly "
    "so their supervisor starts them again.",
    "breakers": "Close the circuit breaker of every LLM model config (shared by all processes).",
    "caches": "Close the cache connections of this process and of every worker; they reconnect on next use.",
    "connections": "Close the pooled database connections of this process and of every worker "
    "(outbound HTTP clients are per call: none are pooled).",
    "config": "Reload the runtime configuration in this process and in every worker "
    "(the `runtime_config_reload` signal).",
}
WORKER_MODES = ("pool_restart", "shutdown")


# --- what one process does (also run by the worker control commands) -------------------------
def here() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def connections_close_local() -> dict:
    """Close this thread's database connections and drain the connection pools of this process
    (a connection lent out is replaced when it comes back). A connection inside a transaction is
    left alone."""
    closed, skipped, pools_drained = 0, 0, 0
    for conn in connections.all(initialized_only=True):
        pool = getattr(type(conn), "_connection_pools", {}).get(conn.alias)
        if pool is not None:
            pool.drain()
            pools_drained += 1
        if conn.in_atomic_block:
            skipped += 1
            continue
        if conn.connection is not None:
            closed += 1
        conn.close()
    return {"closed": closed, "skipped_in_transaction": skipped, "pools_drained": pools_drained}


def caches_close_local() -> dict:
    """Close the connections of every cache this process has used; they reconnect on next use."""
    closed = []
    for backend in caches.all(initialized_only=True):
        backend.close()
        pools = getattr(getattr(backend, "_cache", None), "_pools", None)  # Django's RedisCache
        if isinstance(pools, dict):
            for pool in pools.values():
                pool.disconnect()
        closed.append(type(backend).__name__)
    return {"closed": sorted(closed)}


def config_reload_local() -> dict:
    """Send `runtime_config_reload` here; a receiver that fails is reported, not raised."""
    results = runtime_config_reload.send_robust(sender=ControlRequest)
    failed = [
        f"{getattr(r, '__qualname__', r)}: {type(e).__name__}" for r, e in results if isinstance(e, Exception)
    ]
    for receiver, error in results:
        if isinstance(error, Exception):
            logger.warning("runtime_config_reload receiver %r failed", receiver, exc_info=error)
    return {"receivers": len(results), **({"failed": failed} if failed else {})}


LOCAL_ACTIONS = {
    "connections": connections_close_local,
    "caches": caches_close_local,
    "config": config_reload_local,
}


# --- broadcasts ------------------------------------------------------------------------------
def _broadcast(
    command: str, *, arguments: dict | None = None, destination: list[str] | None = None, reply=True
):
    """Send a remote-control command to the workers; [{"worker": name, ...reply}] (or an error)."""
    try:
        replies = worker_control.broadcast(
            command,
            arguments=arguments,
            destination=destination,
            reply=reply,
            timeout=settings.SYSTEM_CONTROL_REPLY_TIMEOUT,
        )
    except Exception as exc:  # the broker is down: the record says so
        logger.warning("control broadcast %s failed: %s", command, exc)
        return [], f"broadcast failed: {type(exc).__name__}: {exc}"[:300]
    out = []
    for each in replies or []:
        for name, answer in each.items():
            out.append({"worker": name, **(answer if isinstance(answer, dict) else {"reply": answer})})
    return sorted(out, key=lambda r: r["worker"]), None


def _restart_workers(*, destination, mode) -> tuple[dict, list]:
    if mode == "shutdown":
        # A worker does not answer a shutdown: ping first, so the record names who was told.
        replies, error = _broadcast("ping", destination=destination)
        if error is None:
            _, error = _broadcast("shutdown", destination=destination, reply=False)
        result = {"mode": mode, "sent": error is None}
        replies = [{"worker": r["worker"], "shutdown": "sent"} for r in replies]
    else:
        replies, error = _broadcast("pool_restart", arguments={"reload": False}, destination=destination)
        result = {"mode": mode}
    if error:
        result["error"] = error
    return result, replies


def _restart_breakers() -> tuple[dict, list]:
    from agents.llm.client import breakers_reset
    from masterdata.models import ModelConfig

    reset = breakers_reset(ModelConfig.objects.only("pk", "name").order_by("name"))
    return {"reset": reset, "count": len(reset)}, []


def _restart_in_every_process(service: str, *, destination) -> tuple[dict, list]:
    local = {**here(), **LOCAL_ACTIONS[service]()}
    replies, error = _broadcast("agentmesh_control", arguments={"action": service}, destination=destination)
    result = {"local": local}
    if error:
        result["error"] = error
    return result, replies


def service_restart(
    *, service: str, user: Any = None, workers: list[str] | None = None, mode: str | None = None
) -> ControlRequest:
    """Restart `service` (a key of RESTART_SERVICES) and record what happened. `workers` limits
    the broadcast to these worker names; `mode` (workers only) is `pool_restart` or `shutdown`."""
    if service not in RESTART_SERVICES:
        raise ServiceValidationError(
            f"Unknown service; valid: {', '.join(RESTART_SERVICES)}.", field="service"
        )
    if mode is not None and service != "workers":
        raise ServiceValidationError("Only the `workers` service has modes.", field="mode")
    if workers and service == "breakers":
        raise ServiceValidationError(
            "Breakers live in the shared cache: there is no worker to pick.", field="workers"
        )
    destination = list(workers) if workers else None
    parameters: dict = {}
    if destination:
        parameters["workers"] = destination
    if service == "workers":
        mode = mode or "pool_restart"
        parameters["mode"] = mode
        result, replies = _restart_workers(destination=destination, mode=mode)
    elif service == "breakers":
        result, replies = _restart_breakers()
    else:
        result, replies = _restart_in_every_process(service, destination=destination)
    return _record(
        kind=ControlKind.RESTART,
        target=service,
        parameters=parameters,
        result=result,
        replies=replies,
        user=user,
    )


def _record(*, kind, target, parameters, result, replies, user) -> ControlRequest:
    record = ControlRequest.objects.create(
        kind=kind,
        target=target,
        parameters=parameters,
        result=result,
        replies=replies,
        requested_by=user if getattr(user, "is_authenticated", False) else None,
    )
    audited("create", record)
    return record


# --- cache clear -----------------------------------------------------------------------------
def _backend_kind(backend) -> str:
    name = type(backend).__name__
    return {
        "RedisCache": "redis",
        "LocMemCache": "locmem",
        "FileBasedCache": "file",
        "DummyCache": "dummy",
        "DatabaseCache": "database",
    }.get(name, name)


def _clear_redis(backend, made_prefix: str) -> int:
    client = backend._cache.get_client(write=True)
    pattern = "".join(f"\\{c}" if c in "*?[]^\\" else c for c in made_prefix) + "*"  # literal prefix
    cleared, batch = 0, []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 500:
            cleared += client.unlink(*batch)
            batch = []
    if batch:
        cleared += client.unlink(*batch)
    return cleared


def _clear_locmem(backend, made_prefix: str) -> int:
    with backend._lock:
        matching = [key for key in backend._cache if key.startswith(made_prefix)]
        for key in matching:
            backend._delete(key)
    return len(matching)


def cache_clear(*, cache: str | None = None, prefix: str | None = None, user: Any = None) -> ControlRequest:
    """Clear the cache named `cache` (a key of settings.CACHES; default `default`): every key of its
    current version, or only the keys starting with `prefix` (the key as the code uses it, before
    the cache adds KEY_PREFIX and version). Redis: SCAN + UNLINK, never FLUSHDB, so other data in
    the same Redis database stays. The file cache stores hashes of the keys: no prefix there."""
    name = cache or "default"
    if name not in settings.CACHES:
        raise ServiceValidationError(
            f"Unknown cache; configured: {', '.join(settings.CACHES)}.", field="cache"
        )
    backend = caches[name]
    kind = _backend_kind(backend)
    made_prefix = backend.make_key(prefix or "")
    if kind == "redis":
        cleared = _clear_redis(backend, made_prefix)
    elif kind == "locmem":
        cleared = _clear_locmem(backend, made_prefix)
    elif kind == "dummy":
        cleared = 0
    elif prefix:
        raise ServiceValidationError(
            f"The {kind} cache cannot find keys by prefix (it does not keep the key names); "
            "clear the whole cache instead.",
            field="prefix",
        )
    elif kind == "file":
        cleared = len(backend._list_cache_files())
        backend.clear()
    else:
        backend.clear()
        cleared = None
    result = {"cache": name, "backend": kind, "prefix": prefix or "", "cleared": cleared}
    parameters = {"cache": name, **({"prefix": prefix} if prefix else {})}
    return _record(
        kind=ControlKind.CACHE_CLEAR, target=name, parameters=parameters, result=result, replies=[], user=user
    )
