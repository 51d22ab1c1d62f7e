"""System admin, one module per area."""

from . import config, heartbeat  # noqa: F401
