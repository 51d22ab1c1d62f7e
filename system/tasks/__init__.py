"""System Celery tasks (autodiscovered as `system.tasks`), one module per area."""

from .backups import run_backup
from .heartbeat import record_worker_heartbeat

__all__ = ["record_worker_heartbeat", "run_backup"]
