"""Admin pages of the integration app, one module per area (each area adds its import here)."""

from . import (
    bundle,  # noqa: F401
    connections,  # noqa: F401
    webhooks,  # noqa: F401
)
