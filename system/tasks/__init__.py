"""System Celery tasks (autodiscovered as `system.tasks`), one module per area."""

from .backups import run_backup
from .heartbeat import record_worker_heartbeat
from .status import evaluate_system_checks, record_beat_tick

__all__ = ["evaluate_system_checks", "record_beat_tick", "record_worker_heartbeat", "run_backup"]
