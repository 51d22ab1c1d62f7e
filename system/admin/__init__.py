"""System admin, one module per area."""

from . import backups, config, heartbeat  # noqa: F401
