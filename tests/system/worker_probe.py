"""A task for the worker integration tests (loaded by the worker with --include): it records
how many database connections its worker process has opened so far."""

from celery import shared_task
from django.db.backends.signals import connection_created

_opened = [0]


def _count(sender, connection, **kwargs) -> None:
    _opened[0] += 1


connection_created.connect(_count, dispatch_uid="tests.worker_probe")


@shared_task(name="tests.system.record_connections_opened")
def record_connections_opened(hostname: str) -> None:
    from django.db import connection
    from django.utils import timezone

    from system.models import WorkerHeartbeat

    connection.ensure_connection()
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname, defaults={"beats": _opened[0], "seen_at": timezone.now()}
    )
