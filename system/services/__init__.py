"""System services, one module per area; each area adds its public functions here."""

from .backups import (
    backup_delete,
    backup_open,
    backup_prune,
    backup_restore,
    backup_run,
    backup_start,
    backup_write_file,
)
from .config import config_update
from .flags import flag_reset, flag_set
from .health import health_check, worker_heartbeat_record
from .status import (
    beat_tick_record,
    beat_tick_sent,
    broker_housekeeping,
    system_checks_evaluate,
    system_checks_evaluate_if_stale,
)

__all__ = [
    "backup_delete",
    "backup_open",
    "backup_prune",
    "backup_restore",
    "backup_run",
    "backup_start",
    "backup_write_file",
    "beat_tick_record",
    "beat_tick_sent",
    "broker_housekeeping",
    "config_update",
    "flag_reset",
    "flag_set",
    "health_check",
    "system_checks_evaluate",
    "system_checks_evaluate_if_stale",
    "worker_heartbeat_record",
]
