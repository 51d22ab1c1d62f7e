"""System Celery tasks (autodiscovered as `system.tasks`), one module per area."""

from .heartbeat import record_worker_heartbeat
from .metrics import sample_system_metrics

__all__ = ["record_worker_heartbeat", "sample_system_metrics"]
