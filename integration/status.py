"""GET /integration/status: one section per integration area, from a small registry.

An area registers a section from `integration/apps.py` `ready()`:

    from .status import register_status_section
    register_status_section("webhooks", selectors_webhooks.webhooks_status)

`fn(user) -> dict` returns a JSON-ready object about what `user` may see (an admin: everything),
read through the area's selectors. Expected sections:
- "webhooks": {"active", "failing", "disabled", "last_delivery_at", "success_rate_24h"}
- "connections": {"total", "healthy", "unhealthy", "items": [{"id", "name", "last_checked_at", "healthy"}]}
- "jobs": {"recent": [{"id", "kind", "status", "created_at", "finished_at"}]}  (import/sync)
- "flows": {"batch_max_items", "last_24h": {...}} (this module's own area, registered below)
A section that raises is answered as {"error": "<ExceptionType>"} so one area cannot break the page.
"""

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

_SECTIONS: dict[str, Callable] = {}


def register_status_section(name: str, fn: Callable) -> None:
    """Add (or replace) the section `name`; `fn(user)` returns its object."""
    _SECTIONS[name] = fn


def status_sections() -> dict[str, Callable]:
    return dict(_SECTIONS)


def integration_status(user) -> dict:
    sections = {}
    for name, fn in sorted(_SECTIONS.items()):
        try:
            sections[name] = fn(user)
        except Exception as exc:  # noqa: BLE001 - one area's failure must not hide the others
            logger.exception("integration status section %s failed", name)
            sections[name] = {"error": type(exc).__name__}
    return {"sections": sections}
