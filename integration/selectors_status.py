"""Reads for GET /integration/status: the webhooks, API connections and jobs sections (the
flows section is in selectors_flows). Each answers what `user` may see; an admin sees all."""

from datetime import timedelta

from django.db.models import Count, Max, Q
from django.utils import timezone

from agentmesh.core.permissions import is_admin, permitted_queryset

from .models import ApiConnection, DeliveryStatus, IntegrationJob, Webhook, WebhookDelivery

__all__ = ["connections_status", "jobs_status", "webhooks_status"]

RECENT_JOBS = 10


def webhooks_status(user) -> dict:
    """Active, failing (active with consecutive failures) and disabled webhooks, the last
    delivery attempt and the success rate of the attempts of the last 24 hours."""
    webhooks = permitted_queryset(user, Webhook.objects.all())
    counts = webhooks.aggregate(
        n_active=Count("pk", filter=Q(active=True)),
        n_failing=Count("pk", filter=Q(active=True, failure_count__gt=0)),
        n_disabled=Count("pk", filter=Q(active=False)),
    )
    deliveries = WebhookDelivery.objects.filter(webhook__in=webhooks.values("pk"))
    recent = deliveries.filter(attempted_at__gte=timezone.now() - timedelta(hours=24)).aggregate(
        attempts=Count("pk", filter=~Q(status=DeliveryStatus.PENDING)),
        succeeded=Count("pk", filter=Q(status=DeliveryStatus.SUCCEEDED)),
    )
    last = deliveries.aggregate(at=Max("attempted_at"))["at"]
    rate = recent["succeeded"] / recent["attempts"] if recent["attempts"] else None
    return {
        "active": counts["n_active"],
        "failing": counts["n_failing"],
        "disabled": counts["n_disabled"],
        "last_delivery_at": last.isoformat() if last else None,
        "attempts_24h": recent["attempts"],
        "success_rate_24h": rate,
    }


def connections_status(user) -> dict:
    """Each API connection with its last check (never a credential)."""
    connections = permitted_queryset(user, ApiConnection.objects.all()).order_by("name")
    items = [
        {
            "id": str(c.pk),
            "name": c.name,
            "last_checked_at": c.last_check_at.isoformat() if c.last_check_at else None,
            "healthy": c.last_check_ok,
        }
        for c in connections.only("pk", "name", "last_check_at", "last_check_ok")
    ]
    return {
        "total": len(items),
        "healthy": sum(1 for item in items if item["healthy"] is True),
        "unhealthy": sum(1 for item in items if item["healthy"] is False),
        "unchecked": sum(1 for item in items if item["healthy"] is None),
        "items": items,
    }


def jobs_status(user) -> dict:
    """The most recent import/sync jobs of the user (an admin: anyone's)."""
    jobs = IntegrationJob.objects.all() if is_admin(user) else IntegrationJob.objects.filter(owner=user)
    return {
        "recent": [
            {
                "id": str(job.pk),
                "kind": job.kind,
                "status": job.status,
                "created_at": job.created_at.isoformat(),
                "finished_at": job.finished_at.isoformat() if job.finished_at else None,
            }
            for job in jobs.order_by("-created_at")[:RECENT_JOBS]
        ]
    }
