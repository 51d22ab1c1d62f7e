"""Admin pages of observability.

Recorded data (events — also the audit trail —, spans, log records, request samples, metric
series) is append-only history: viewable, never added, changed or deleted here (retention
prunes it). Alerts are changed only by their actions (acknowledge, resolve), which call the
services and are audited with channel `admin`. Alert rules are configuration: editable, with an
"evaluate now" button.
"""

from django.apps import apps
from django.contrib import admin, messages
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from agentmesh.core.admin import AuditedAdmin, HistoryAdmin, ObjectAction, ObjectActionsMixin
from agentmesh.core.admin_display import EMPTY, IdSearchMixin, human_duration, money, pretty_json, short_id
from agentmesh.core.audit import CHANNELS

from . import services
from .models import (
    Alert,
    AlertRule,
    AlertState,
    Event,
    LogRecord,
    MetricSeries,
    ObservabilityEvent,
    PipelineState,
    RequestSample,
    Span,
)


def _trace_link(trace_id: str, model: str = "span") -> str:
    if not trace_id:
        return EMPTY
    url = reverse(f"admin:observability_{model}_changelist") + f"?trace_id__exact={trace_id}"
    return format_html('<a href="{}" title="{}">{}…</a>', url, trace_id, trace_id[:8])


def _resource_url(resource_type: str, resource_id: str) -> str | None:
    """The admin page of the resource an event is about (no query), or None."""
    if not (resource_type and resource_id) or "." not in resource_type:
        return None
    try:
        model = apps.get_model(resource_type)
    except (LookupError, ValueError):
        return None
    if not admin.site.is_registered(model):
        return None
    try:
        return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[resource_id])
    except NoReverseMatch:
        return None


class ChannelFilter(admin.SimpleListFilter):
    """The channel an audit event was written through (api, admin, command, task, system)."""

    title = "audit channel"
    parameter_name = "channel"

    def lookups(self, request, model_admin):
        return [(channel, channel) for channel in CHANNELS]

    def queryset(self, request, queryset):
        if self.value() in CHANNELS:
            return queryset.filter(type__startswith="audit.", payload__channel=self.value())
        return queryset


@admin.register(Event)
class EventAdmin(IdSearchMixin, HistoryAdmin):
    """Events, the audit trail among them, at /admin/observability/event/."""

    list_display = [
        "timestamp",
        "type",
        "level",
        "actor",
        "resource_type",
        "resource",
        "trace",
        "event_id",
    ]
    list_filter = ["level", "source", ChannelFilter, "timestamp", "resource_type"]
    search_fields = ["type", "resource_id", "trace_id", "request_id", "message", "=actor__username"]
    id_search_fields = ("pk", "resource_id")  # a whole id finds the event and the events about it
    date_hierarchy = "timestamp"
    list_select_related = ["actor"]
    fields = [
        "id",
        "timestamp",
        "type",
        "level",
        "source",
        "actor",
        "resource_type",
        "resource",
        "message",
        "trace_spans",
        "span_id",
        "request_id",
        "related_logs",
        "payload_pretty",
    ]
    readonly_fields = ["resource", "trace_spans", "related_logs", "payload_pretty"]

    @admin.display(description="resource", ordering="resource_id")
    def resource(self, obj):
        url = _resource_url(obj.resource_type, obj.resource_id)
        if url is None:
            return short_id(obj.resource_id)
        return format_html('<a href="{}">{}</a>', url, short_id(obj.resource_id))

    @admin.display(description="trace", ordering="trace_id")
    def trace(self, obj):
        return _trace_link(obj.trace_id)

    @admin.display(description="id", ordering="id")
    def event_id(self, obj):
        return short_id(obj.pk)

    @admin.display(description="trace id (its spans)")
    def trace_spans(self, obj):
        return _trace_link(obj.trace_id)

    @admin.display(description="log records of the request")
    def related_logs(self, obj):
        if not obj.request_id:
            return EMPTY
        url = reverse("admin:observability_logrecord_changelist") + f"?request_id__exact={obj.request_id}"
        return format_html('<a href="{}">{}</a>', url, obj.request_id)

    @admin.display(description="payload")
    def payload_pretty(self, obj):
        return pretty_json(obj.payload)


@admin.register(ObservabilityEvent)
class ObservabilityEventAdmin(EventAdmin):
    """The same pages at the model's own address (/admin/observability/observabilityevent/),
    kept for links that use it; not listed on the index (Events is)."""

    def has_module_permission(self, request):
        return False


@admin.register(Span)
class SpanAdmin(IdSearchMixin, HistoryAdmin):
    list_display = ["start_time", "name", "kind", "status", "duration", "trace", "model", "cost", "tokens"]
    list_filter = ["kind", "status", "start_time", "model"]
    search_fields = ["name", "=trace_id", "=span_id", "=parent_span_id", "model", "agent_id"]
    id_search_fields = ("pk", "agent_id")
    date_hierarchy = "start_time"
    fields = [
        "id",
        "name",
        "kind",
        "status",
        "start_time",
        "end_time",
        "duration",
        "trace_events",
        "span_id",
        "parent_span_id",
        "user",
        "model",
        "agent_id",
        "input_tokens",
        "output_tokens",
        "cost",
        "error",
        "attributes_pretty",
    ]
    readonly_fields = ["duration", "trace_events", "cost", "attributes_pretty"]

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, obj):
        return human_duration(obj.duration_ms)

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, obj):
        return money(obj.cost_usd)

    @admin.display(description="tokens")
    def tokens(self, obj):
        return obj.total_tokens or EMPTY

    @admin.display(description="trace", ordering="trace_id")
    def trace(self, obj):
        return _trace_link(obj.trace_id)

    @admin.display(description="trace id (its events)")
    def trace_events(self, obj):
        if not obj.trace_id:
            return EMPTY
        spans = reverse("admin:observability_span_changelist") + f"?trace_id__exact={obj.trace_id}"
        events = reverse("admin:observability_event_changelist") + f"?trace_id__exact={obj.trace_id}"
        return format_html(
            '{} — <a href="{}">all spans</a> · <a href="{}">events</a>', obj.trace_id, spans, events
        )

    @admin.display(description="attributes")
    def attributes_pretty(self, obj):
        return pretty_json(obj.attributes)


@admin.register(LogRecord)
class LogRecordAdmin(HistoryAdmin):
    list_display = ["timestamp", "level", "logger", "short_message", "request", "trace"]
    list_filter = ["level", "timestamp"]
    search_fields = ["logger", "message", "=request_id", "=trace_id", "process"]
    date_hierarchy = "timestamp"

    @admin.display(description="message", ordering="message")
    def short_message(self, obj):
        return obj.message if len(obj.message) <= 120 else obj.message[:119] + "…"

    @admin.display(description="request id", ordering="request_id")
    def request(self, obj):
        return short_id(obj.request_id)

    @admin.display(description="trace", ordering="trace_id")
    def trace(self, obj):
        return _trace_link(obj.trace_id)


@admin.register(RequestSample)
class RequestSampleAdmin(HistoryAdmin):
    list_display = ["timestamp", "method", "route", "status", "duration"]
    list_filter = ["method", "status", "timestamp"]
    search_fields = ["route"]
    date_hierarchy = "timestamp"

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, obj):
        return human_duration(obj.duration_ms)


@admin.register(MetricSeries)
class MetricSeriesAdmin(HistoryAdmin):
    list_display = ["name", "labels", "value"]
    search_fields = ["name", "labels"]


@admin.register(PipelineState)
class PipelineStateAdmin(HistoryAdmin):
    """What the pipeline last did (alert evaluation, retention prune): written by its tasks."""

    list_display = ["key", "updated_at", "value"]
    search_fields = ["key"]
    fields = ["key", "updated_at", "value_pretty"]
    readonly_fields = ["value_pretty"]

    @admin.display(description="value")
    def value_pretty(self, obj):
        return pretty_json(obj.value)


def _evaluate(request, rule, data):
    alert = services.alert_rule_evaluate(rule=rule)
    rule.refresh_from_db()
    value = "no data" if rule.last_value is None else f"{rule.last_value:g}"
    if alert is None:
        return f"Evaluated {rule.name}: {value}; no alert open."
    return f"Evaluated {rule.name}: {value}; alert {alert.state}: {alert.title}"


@admin.register(AlertRule)
class AlertRuleAdmin(IdSearchMixin, ObjectActionsMixin, AuditedAdmin):
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
    list_filter = ["metric", "severity", "enabled", "last_evaluated_at"]
    search_fields = ["name", "description", "=owner__username"]
    readonly_fields = ["last_evaluated_at", "last_value"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    object_actions = (
        ObjectAction(
            name="evaluate",
            label="Evaluate now",
            run=_evaluate,
            description="Evaluate this rule now: it may fire an alert (and notify its channels) "
            "or resolve the open one.",
        ),
    )


def _acknowledge(request, alert, data):
    services.alert_acknowledge(alert=alert, user=request.user)
    return f"Alert acknowledged: {alert.title}"


def _resolve(request, alert, data):
    services.alert_resolve(alert=alert, user=request.user)
    return f"Alert resolved: {alert.title}"


@admin.register(Alert)
class AlertAdmin(IdSearchMixin, ObjectActionsMixin, HistoryAdmin):
    """Alerts change only through acknowledge and resolve (the services, audited)."""

    list_display = [
        "fired_at",
        "title",
        "severity",
        "state",
        "occurrences",
        "value",
        "rule",
        "owner",
        "alert_id",
    ]
    list_filter = ["state", "severity", "fired_at", "acknowledged_at", "resolved_at"]
    search_fields = ["title", "message", "dedup_key", "rule__name", "=owner__username"]
    id_search_fields = ("pk", "rule__id")
    list_select_related = ["rule", "owner"]
    date_hierarchy = "fired_at"
    actions = ["acknowledge", "resolve"]
    object_actions = (
        ObjectAction(
            name="acknowledge",
            label="Acknowledge",
            run=_acknowledge,
            available=lambda alert: alert.state == AlertState.FIRING,
            description="Acknowledge this alert: someone is on it. It stays open until resolved.",
        ),
        ObjectAction(
            name="resolve",
            label="Resolve",
            run=_resolve,
            available=lambda alert: alert.state != AlertState.RESOLVED,
            description="Resolve this alert (a rule's alert fires again if the rule is still breached).",
        ),
    )

    @admin.display(description="id", ordering="id")
    def alert_id(self, obj):
        return short_id(obj.pk)

    @admin.action(description="Acknowledge the selected alerts", permissions=["object_action"])
    def acknowledge(self, request, queryset):
        done = 0
        for alert in queryset.filter(state=AlertState.FIRING):
            services.alert_acknowledge(alert=alert, user=request.user)
            done += 1
        self.message_user(request, f"{done} alert(s) acknowledged.", messages.SUCCESS)

    @admin.action(description="Resolve the selected alerts", permissions=["object_action"])
    def resolve(self, request, queryset):
        done = 0
        for alert in queryset.exclude(state=AlertState.RESOLVED):
            services.alert_resolve(alert=alert, user=request.user)
            done += 1
        self.message_user(request, f"{done} alert(s) resolved.", messages.SUCCESS)
