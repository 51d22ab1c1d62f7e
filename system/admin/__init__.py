"""System admin, one module per area."""

from . import backups, config, heartbeat, metrics, status  # noqa: F401
