"""System models, one module per area (heartbeat, …); each area adds its import here."""

from .control import ControlKind, ControlRequest
from .heartbeat import WorkerHeartbeat
from .metrics import MetricSample

__all__ = ["ControlKind", "ControlRequest", "MetricSample", "WorkerHeartbeat"]
