from django.contrib import admin

from agentmesh.core.admin import AuditedAdmin

from . import services
from .models import Alert, AlertRule, LogRecord, MetricSeries, ObservabilityEvent, Span


class ReadOnlyAdmin(AuditedAdmin):
    """Recorded data: browsable, never edited by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ObservabilityEvent)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["timestamp", "type", "level", "actor", "resource_type", "resource_id", "trace_id"]
    list_filter = ["level", "source"]
    search_fields = ["type", "resource_id", "trace_id", "request_id", "message"]
    date_hierarchy = "timestamp"
    list_select_related = ["actor"]


@admin.register(Span)
class SpanAdmin(ReadOnlyAdmin):
    list_display = ["start_time", "name", "kind", "status", "duration_ms", "trace_id", "model", "cost_usd"]
    list_filter = ["kind", "status"]
    search_fields = ["name", "trace_id", "span_id", "model", "agent_id"]
    date_hierarchy = "start_time"


@admin.register(LogRecord)
class LogRecordAdmin(ReadOnlyAdmin):
    list_display = ["timestamp", "level", "logger", "message", "request_id", "trace_id"]
    list_filter = ["level"]
    search_fields = ["logger", "message", "request_id", "trace_id"]
    date_hierarchy = "timestamp"


@admin.register(MetricSeries)
class MetricSeriesAdmin(ReadOnlyAdmin):
    list_display = ["name", "labels", "value"]
    search_fields = ["name", "labels"]


@admin.register(AlertRule)
class AlertRuleAdmin(AuditedAdmin):
    list_display = [
        "name",
        "metric",
        "aggregation",
        "comparison",
        "threshold",
        "window_minutes",
        "severity",
        "enabled",
        "owner",
        "last_evaluated_at",
        "last_value",
    ]
    list_filter = ["metric", "severity", "enabled"]
    search_fields = ["name", "description"]
    readonly_fields = ["last_evaluated_at", "last_value"]
    list_select_related = ["owner"]


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["fired_at", "title", "severity", "state", "occurrences", "rule", "owner"]
    list_filter = ["state", "severity"]
    search_fields = ["title", "message", "dedup_key"]
    list_select_related = ["rule", "owner"]
    actions = ["acknowledge", "resolve"]

    @admin.action(description="Acknowledge selected alerts")
    def acknowledge(self, request, queryset):
        for alert in queryset.filter(state="firing"):
            services.alert_acknowledge(alert=alert, user=request.user)

    @admin.action(description="Resolve selected alerts")
    def resolve(self, request, queryset):
        for alert in queryset.exclude(state="resolved"):
            services.alert_resolve(alert=alert, user=request.user)
