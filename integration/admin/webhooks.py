from django.contrib import admin, messages

from agentmesh.core.admin import AuditedAdmin

from ..models import Webhook, WebhookDelivery, WorkflowTrigger
from ..services.webhooks import webhook_redeliver


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    extra = 0
    can_delete = False
    ordering = ["-created_at"]
    fields = ["created_at", "event_type", "attempt", "status", "response_code", "duration_ms", "error"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Webhook)
class WebhookAdmin(AuditedAdmin):
    list_display = ["name", "owner", "url", "active", "failure_count", "disabled_at", "created_at"]
    list_filter = ["active"]
    search_fields = ["name", "url", "owner__username"]
    readonly_fields = ["secret_mask", "failure_count", "disabled_at", "disabled_reason"]
    exclude = ["encrypted_secret"]
    inlines = [WebhookDeliveryInline]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "event_type",
        "webhook",
        "attempt",
        "status",
        "response_code",
        "duration_ms",
        "created_at",
    ]
    list_filter = ["status", "event_type"]
    search_fields = ["message_id", "webhook__name"]
    actions = ["redeliver"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Redeliver the selected messages")
    def redeliver(self, request, queryset):
        for delivery in queryset.select_related("webhook"):
            webhook_redeliver(delivery=delivery, actor=request.user)
        self.message_user(request, f"{queryset.count()} message(s) queued again.", messages.SUCCESS)


@admin.register(WorkflowTrigger)
class WorkflowTriggerAdmin(AuditedAdmin):
    list_display = ["name", "workflow", "owner", "active", "trigger_count", "last_triggered_at"]
    list_filter = ["active"]
    search_fields = ["name", "workflow__name", "owner__username"]
    readonly_fields = ["token_prefix", "trigger_count", "last_triggered_at"]
    exclude = ["token_hash", "encrypted_secret"]
