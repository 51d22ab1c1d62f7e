"""System services, one module per area; each area adds its public functions here."""

from .config import config_update
from .flags import flag_reset, flag_set
from .health import health_check, worker_heartbeat_record

__all__ = [
    "config_update",
    "flag_reset",
    "flag_set",
    "health_check",
    "worker_heartbeat_record",
]
