"""Webhook delivery: one attempt per task, ids only (never the secret)."""

from celery import shared_task

__all__ = ["webhook_deliver_task"]


@shared_task(
    name="integration.tasks.webhook_deliver",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=60,
    time_limit=75,
    ignore_result=True,
)
def webhook_deliver_task(delivery_id: str) -> None:
    """Make one pending delivery attempt; the service schedules the next one on failure.
    Exits quietly if the delivery is gone or no longer pending (a duplicate message)."""
    from ..models import DeliveryStatus, WebhookDelivery
    from ..services.webhooks import webhook_deliver

    delivery = WebhookDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING).first()
    if delivery is not None:
        webhook_deliver(delivery=delivery)
