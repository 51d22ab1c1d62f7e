"""System models, one module per area (heartbeat, …); each area adds its import here."""

from .config import FeatureFlag
from .heartbeat import WorkerHeartbeat

__all__ = ["FeatureFlag", "WorkerHeartbeat"]
