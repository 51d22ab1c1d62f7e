"""System models, one module per area (heartbeat, …); each area adds its import here."""

from .backups import Backup, BackupFormat, BackupStatus
from .config import FeatureFlag
from .heartbeat import WorkerHeartbeat
from .status import BeatTick, CheckState, SystemCheck

__all__ = [
    "Backup",
    "BackupFormat",
    "BackupStatus",
    "BeatTick",
    "CheckState",
    "FeatureFlag",
    "SystemCheck",
    "WorkerHeartbeat",
]
