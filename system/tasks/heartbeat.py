import socket

from celery import shared_task

from .. import services


@shared_task(name="system.tasks.record_worker_heartbeat", ignore_result=True)
def record_worker_heartbeat(hostname: str | None = None) -> None:
    """Periodic: record that a worker is alive (read by the health and status endpoints)."""
    services.worker_heartbeat_record(hostname=hostname or socket.gethostname())
