"""System models, one module per area (heartbeat, …); each area adds its import here."""

from .heartbeat import WorkerHeartbeat
from .status import BeatTick, CheckState, SystemCheck

__all__ = ["BeatTick", "CheckState", "SystemCheck", "WorkerHeartbeat"]
