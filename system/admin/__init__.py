"""System admin, one module per area."""

from . import heartbeat  # noqa: F401
