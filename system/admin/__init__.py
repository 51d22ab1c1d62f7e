"""System admin, one module per area."""

from . import heartbeat, metrics  # noqa: F401
