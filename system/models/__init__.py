"""System models, one module per area (heartbeat, …); each area adds its import here."""

from .backups import Backup, BackupFormat, BackupStatus
from .config import FeatureFlag
from .control import ControlKind, ControlRequest
from .heartbeat import WorkerHeartbeat
from .metrics import MetricSample
from .status import BeatTick, CheckState, SystemCheck

__all__ = [
    "Backup",
    "BackupFormat",
    "BackupStatus",
    "BeatTick",
    "CheckState",
    "ControlKind",
    "ControlRequest",
    "FeatureFlag",
    "MetricSample",
    "SystemCheck",
    "WorkerHeartbeat",
]
