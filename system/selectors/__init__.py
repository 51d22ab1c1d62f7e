"""System reads, one module per area; each area adds its public functions here."""

from .config import config_values, flag_get, flags_list
from .info import register_feature_source, system_info
from .stats import system_stats
from .status import status_cache_clear, system_alerts, system_status

__all__ = [
    "config_values",
    "flag_get",
    "flags_list",
    "register_feature_source",
    "status_cache_clear",
    "system_alerts",
    "system_info",
    "system_stats",
    "system_status",
]
