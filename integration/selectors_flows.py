"""Reads for the flows area: its section of GET /integration/status."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from agents.models import Agent
from observability.selectors import events_visible
from workflows.models import Workflow

__all__ = ["flows_status"]


def flows_status(user) -> dict:
    """The batch limit, and the agents and workflows the user (an admin: anyone) created in the
    last 24 hours, from the audit events (any channel: API, batch, flows, admin)."""
    since = timezone.now() - timedelta(hours=24)
    labels = {Agent._meta.label_lower: "agents", Workflow._meta.label_lower: "workflows"}
    rows = (
        events_visible(user)
        .filter(type="audit.create", timestamp__gte=since, resource_type__in=list(labels))
        .values("resource_type")
        .annotate(n=Count("id"))
    )
    created = dict.fromkeys(labels.values(), 0)
    for row in rows:
        created[labels[row["resource_type"]]] = row["n"]
    return {"batch_max_items": settings.INTEGRATION_BATCH_MAX_ITEMS, "created_24h": created}
