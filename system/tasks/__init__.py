"""System Celery tasks (autodiscovered as `system.tasks`), one module per area."""

from .heartbeat import record_worker_heartbeat

__all__ = ["record_worker_heartbeat"]
