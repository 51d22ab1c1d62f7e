"""System services, one module per area; each area adds its public functions here."""

from .health import health_check, worker_heartbeat_record

__all__ = ["health_check", "worker_heartbeat_record"]
