"""Which database connections a process keeps: the pool (API processes) or its own per thread."""

from django.conf import settings
from django.db import connections


def use_persistent_connections() -> None:
    """Drop the connection pool in this process: each thread keeps a connection of its own for
    DATABASE_CONN_MAX_AGE seconds instead.

    For Celery worker and beat processes: a prefork child runs one task at a time (one
    connection, reused across tasks), and the threads of a step (lease heartbeat, map items,
    agent tool calls) each need a connection of their own, which a small pool would make wait.
    Called before the worker forks its children, so no pool is inherited across a fork."""
    for alias, database in settings.DATABASES.items():
        options = database.get("OPTIONS") or {}
        if not options.get("pool"):
            continue
        connection = connections[alias]
        connection.close()
        pool = getattr(type(connection), "_connection_pools", {}).pop(alias, None)
        if pool is not None:
            pool.close()
        options.pop("pool")
        database["CONN_MAX_AGE"] = settings.DATABASE_CONN_MAX_AGE
