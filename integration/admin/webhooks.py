"""Webhooks and workflow triggers (configuration: created through the API, which shows their
secret or token once; edited and deleted here) and webhook deliveries (history: view only,
redelivered through the service)."""

from django.contrib import admin, messages

from agentmesh.core.admin import AuditedAdmin, HistoryAdmin, ObjectAction, ObjectActionsMixin, ReadOnlyInline
from agentmesh.core.admin_display import IdSearchMixin, human_duration, pretty_json, short_id

from ..models import Webhook, WebhookDelivery, WorkflowTrigger
from ..services.webhooks import webhook_redeliver, webhook_test


class WebhookDeliveryInline(ReadOnlyInline):
    model = WebhookDelivery
    ordering = ["-created_at"]
    fields = ["created_at", "event_type", "attempt", "status", "response_code", "duration_ms", "error"]
    readonly_fields = fields


def _send_test(request, webhook, data):
    delivery = webhook_test(webhook=webhook, actor=request.user)
    outcome = f"answered {delivery.response_code}" if delivery.response_code else delivery.error
    return f"Test message sent to {webhook.name}: {delivery.status} ({outcome})."


@admin.register(Webhook)
class WebhookAdmin(IdSearchMixin, ObjectActionsMixin, AuditedAdmin):
    """New webhooks come through the API (it shows the signing secret once)."""

    list_display = ["name", "owner", "url", "active", "failure_count", "disabled_at", "created_at"]
    list_filter = ["active", "created_at", "disabled_at"]
    search_fields = ["name", "url", "=owner__username"]
    list_select_related = ["owner"]
    readonly_fields = ["owner", "secret_mask", "failure_count", "disabled_at", "disabled_reason"]
    exclude = ["encrypted_secret"]
    inlines = [WebhookDeliveryInline]
    object_actions = (
        ObjectAction(
            name="test",
            label="Send a test message",
            run=_send_test,
            description="POST a signed webhook.test message to this webhook's URL now (one attempt).",
        ),
    )

    def has_add_permission(self, request):
        return False


def _redeliver(request, delivery, data):
    again = webhook_redeliver(delivery=delivery, actor=request.user)
    return f"Message {delivery.message_id} queued again (delivery {again.pk})."


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(IdSearchMixin, ObjectActionsMixin, HistoryAdmin):
    list_display = [
        "created_at",
        "event_type",
        "webhook",
        "attempt",
        "status",
        "response_code",
        "duration",
        "message",
        "delivery_id",
    ]
    list_filter = ["status", "event_type", "created_at", "attempted_at"]
    search_fields = ["=message_id", "webhook__name", "error"]
    id_search_fields = ("pk", "webhook__id", "event_id")
    list_select_related = ["webhook"]
    date_hierarchy = "created_at"
    actions = ["redeliver"]
    fields = [
        "id",
        "webhook",
        "message_id",
        "event_id",
        "event_type",
        "attempt",
        "status",
        "created_at",
        "attempted_at",
        "next_attempt_at",
        "duration",
        "response_code",
        "error",
        "response_body",
        "payload_pretty",
    ]
    readonly_fields = ["duration", "payload_pretty"]
    object_actions = (
        ObjectAction(
            name="redeliver",
            label="Redeliver",
            run=_redeliver,
            description="Send this message again (same webhook-id) as a new first attempt, queued now.",
        ),
    )

    @admin.display(description="id", ordering="id")
    def delivery_id(self, obj):
        return short_id(obj.pk)

    @admin.display(description="message", ordering="message_id")
    def message(self, obj):
        return short_id(obj.message_id)

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, obj):
        return human_duration(obj.duration_ms)

    @admin.display(description="payload")
    def payload_pretty(self, obj):
        return pretty_json(obj.payload)

    @admin.action(description="Redeliver the selected messages", permissions=["object_action"])
    def redeliver(self, request, queryset):
        count = 0
        for delivery in queryset.select_related("webhook"):
            webhook_redeliver(delivery=delivery, actor=request.user)
            count += 1
        self.message_user(request, f"{count} message(s) queued again.", messages.SUCCESS)


@admin.register(WorkflowTrigger)
class WorkflowTriggerAdmin(IdSearchMixin, AuditedAdmin):
    """New triggers come through the API (it shows the token once)."""

    list_display = [
        "name",
        "workflow",
        "owner",
        "active",
        "token_prefix",
        "trigger_count",
        "last_triggered_at",
    ]
    list_filter = ["active", "last_triggered_at"]
    search_fields = ["name", "workflow__name", "=owner__username", "token_prefix"]
    id_search_fields = ("pk", "workflow__id")
    list_select_related = ["workflow", "owner"]
    readonly_fields = ["owner", "workflow", "token_prefix", "trigger_count", "last_triggered_at"]
    exclude = ["token_hash", "encrypted_secret"]

    def has_add_permission(self, request):
        return False
