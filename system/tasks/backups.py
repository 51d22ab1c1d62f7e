"""Thin Celery entry point for backup jobs."""

from celery import shared_task
from django.conf import settings

__all__ = ["run_backup"]


@shared_task(
    name="system.tasks.run_backup",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.BACKUP_TIME_LIMIT_SECONDS,
    time_limit=settings.BACKUP_TIME_LIMIT_SECONDS + 60,
    ignore_result=True,
)
def run_backup(backup_id: str) -> str | None:
    """Run one Backup job by id (idempotent: a finished job is left alone)."""
    from ..services.backups import backup_run

    backup = backup_run(backup_id=backup_id)
    return backup.status if backup else None
