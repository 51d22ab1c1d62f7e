"""System selectors (reads), one module per area; each area adds its import here."""

from .config import config_values, flag_get, flags_list

__all__ = ["config_values", "flag_get", "flags_list"]
