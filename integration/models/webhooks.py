"""Outbound webhooks (subscriptions to event types, every delivery attempt recorded) and
inbound workflow triggers."""

from django.db import models

from agentmesh.core.models import OwnedModel, TimeStampedModel, object_permission_models

__all__ = [
    "DeliveryStatus",
    "Webhook",
    "WebhookDelivery",
    "WebhookGroupPermission",
    "WebhookUserPermission",
    "WorkflowTrigger",
    "WorkflowTriggerGroupPermission",
    "WorkflowTriggerUserPermission",
]


class Webhook(OwnedModel):
    """POSTs the owner's events of `event_types` to `url`, signed per Standard Webhooks."""

    SENSITIVE_FIELDS = ("encrypted_secret",)

    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    url = models.CharField(max_length=2000, help_text="An http(s) URL the outbound guard allows.")
    event_types = models.JSONField(default=list, help_text="Event types from GET /webhook-event-types.")
    active = models.BooleanField(default=True)
    encrypted_secret = models.TextField(editable=False)
    secret_mask = models.CharField(max_length=20, editable=False, blank=True)
    failure_count = models.PositiveIntegerField(default=0, help_text="Consecutive failed attempts.")
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True)

    class Meta(OwnedModel.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name"], name="integration_webhook_unique_name_per_owner"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """The admin's check (the API's goes through the services, with the same rules)."""
        from django.core.exceptions import ValidationError

        from observability.models import webhook_url_problem

        from ..services.webhooks import EVENT_CATALOGUE

        errors = {}
        if self.url and (problem := webhook_url_problem(self.url)):
            errors["url"] = problem
        unknown = sorted(set(self.event_types or []) - set(EVENT_CATALOGUE))
        if unknown or not self.event_types:
            errors["event_types"] = f"Unknown or no event types: {', '.join(unknown)}"
        if errors:
            raise ValidationError(errors)


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class WebhookDelivery(TimeStampedModel):
    """One attempt to deliver one message (`message_id`, the `webhook-id` header, is the same for
    every attempt of a message). A failed attempt that will be retried has a pending successor."""

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    message_id = models.CharField(max_length=64, db_index=True)
    event_id = models.UUIDField(null=True, blank=True)
    event_type = models.CharField(max_length=100)
    payload = models.JSONField(default=dict)
    attempt = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, help_text="The first bytes of the answer.")
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    attempted_at = models.DateTimeField(null=True, blank=True)

    class Meta(TimeStampedModel.Meta):
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["webhook", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.event_type} #{self.attempt} ({self.status})"


class WorkflowTrigger(OwnedModel):
    """POST /api/v1/integration/hooks/<token> starts an execution of `workflow` as the owner.
    Only the token's SHA-256 is kept (the token is shown once); a secret, when set, requires a
    Standard Webhooks signature."""

    SENSITIVE_FIELDS = ("token_hash", "encrypted_secret")

    workflow = models.ForeignKey("workflows.Workflow", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_prefix = models.CharField(max_length=12, editable=False)
    encrypted_secret = models.TextField(blank=True, editable=False)
    active = models.BooleanField(default=True)
    last_triggered_at = models.DateTimeField(null=True, blank=True, editable=False)
    trigger_count = models.PositiveIntegerField(default=0, editable=False)

    def __str__(self) -> str:
        return self.name


WebhookUserPermission, WebhookGroupPermission = object_permission_models(Webhook)
WorkflowTriggerUserPermission, WorkflowTriggerGroupPermission = object_permission_models(WorkflowTrigger)
