"""Integration models, one module per area (each area adds its import line here)."""

from .bundle import *  # noqa: F403
