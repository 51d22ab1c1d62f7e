"""System services, one module per area; each area adds its public functions here."""

from .health import health_check, worker_heartbeat_record
from .status import (
    beat_tick_record,
    beat_tick_sent,
    broker_housekeeping,
    system_checks_evaluate,
    system_checks_evaluate_if_stale,
)

__all__ = [
    "beat_tick_record",
    "beat_tick_sent",
    "broker_housekeeping",
    "health_check",
    "system_checks_evaluate",
    "system_checks_evaluate_if_stale",
    "worker_heartbeat_record",
]
