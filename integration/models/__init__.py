"""Integration models, one module per area (each area adds its import line here)."""

from .webhooks import *  # noqa: F403
