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

__all__ = [
    "backup_delete",
    "backup_open",
    "backup_prune",
    "backup_restore",
    "backup_run",
    "backup_start",
    "backup_write_file",
    "config_update",
    "flag_reset",
    "flag_set",
    "health_check",
    "worker_heartbeat_record",
]
