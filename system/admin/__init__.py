"""System admin, one module per area."""

from . import heartbeat, status  # noqa: F401
