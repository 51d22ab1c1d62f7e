"""Celery tasks of the integration app, one module per area (each area adds its import here)."""

from .bundle import *  # noqa: F403
from .webhooks import *  # noqa: F403
