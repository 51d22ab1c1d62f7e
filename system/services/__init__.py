"""System services, one module per area; each area adds its public functions here."""

from .control import RESTART_SERVICES, cache_clear, service_restart
from .health import health_check, worker_heartbeat_record
from .metrics import metric_samples_prune, metric_samples_record

__all__ = [
    "RESTART_SERVICES",
    "cache_clear",
    "health_check",
    "metric_samples_prune",
    "metric_samples_record",
    "service_restart",
    "worker_heartbeat_record",
]
