"""Integration models, one module per area (each area adds its import line here)."""

from .bundle import *  # noqa: F403
from .connections import *  # noqa: F403
from .webhooks import *  # noqa: F403
