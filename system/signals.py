"""Signals other areas connect to (sent in every API process and, through a worker control
command, in every worker)."""

from django.dispatch import Signal

# Sent by `POST /system/restart/config`: drop any per-process copy of the runtime configuration
# and feature flags so the next read comes from the database.
runtime_config_reload = Signal()
