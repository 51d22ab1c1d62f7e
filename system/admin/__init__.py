"""System admin, one module per area."""

from . import backups, config, heartbeat, status  # noqa: F401
