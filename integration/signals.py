"""Receivers connected in IntegrationConfig.ready()."""

import logging

logger = logging.getLogger("integration.webhooks")


def dispatch_event_to_webhooks(sender, instance, created, **kwargs) -> None:
    """A recorded event → deliveries to its owner's subscribed webhooks (never breaks recording)."""
    if not created:
        return
    from django.db import transaction

    from .services.webhooks import webhooks_dispatch_event

    try:
        with transaction.atomic():  # a savepoint: a failure here cannot poison the event's write
            webhooks_dispatch_event(event=instance)
    except Exception:
        logger.warning("queueing webhook deliveries for event %s failed", instance.pk, exc_info=True)
