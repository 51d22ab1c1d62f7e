from django.apps import AppConfig


class IntegrationConfig(AppConfig):
    name = "integration"
    verbose_name = "Integration"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from observability.models import ObservabilityEvent

        from .signals import dispatch_event_to_webhooks

        post_save.connect(
            dispatch_event_to_webhooks,
            sender=ObservabilityEvent,
            dispatch_uid="integration.webhooks.dispatch",
        )
