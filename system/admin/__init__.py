"""System admin, one module per area."""

from . import backups, heartbeat  # noqa: F401
