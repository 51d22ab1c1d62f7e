"""System models, one module per area (heartbeat, …); each area adds its import here."""

from .heartbeat import WorkerHeartbeat

__all__ = ["WorkerHeartbeat"]
