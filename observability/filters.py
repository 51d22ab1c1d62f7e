import django_filters as df

from agentmesh.core.filters import FilterSet

from .logs import _LEVELS
from .models import (
    Alert,
    AlertRule,
    AlertState,
    Level,
    LogRecord,
    ObservabilityEvent,
    Severity,
    Span,
    SpanKind,
    SpanStatus,
)

_LEVELNO = {name: number for number, name in _LEVELS.items()}


class EventFilter(FilterSet):
    type = df.CharFilter(field_name="type", lookup_expr="startswith", help_text="Type prefix, e.g. `audit.`.")
    level = df.MultipleChoiceFilter(choices=Level.choices)
    source = df.CharFilter()
    resource_type = df.CharFilter()
    resource_id = df.CharFilter()
    actor = df.NumberFilter(field_name="actor_id", help_text="User id of the actor.")
    trace_id = df.CharFilter()
    request_id = df.CharFilter()
    since = df.IsoDateTimeFilter(field_name="timestamp", lookup_expr="gte")
    until = df.IsoDateTimeFilter(field_name="timestamp", lookup_expr="lt")

    class Meta:
        model = ObservabilityEvent
        fields = []


class TraceFilter(FilterSet):
    status = df.ChoiceFilter(choices=SpanStatus.choices)
    kind = df.ChoiceFilter(choices=SpanKind.choices)
    name = df.CharFilter(lookup_expr="icontains")
    trace_id = df.CharFilter()
    user = df.NumberFilter(field_name="user_id")
    since = df.IsoDateTimeFilter(field_name="start_time", lookup_expr="gte")
    until = df.IsoDateTimeFilter(field_name="start_time", lookup_expr="lt")
    min_duration_ms = df.NumberFilter(field_name="duration_ms", lookup_expr="gte")

    class Meta:
        model = Span
        fields = []


class LogFilter(FilterSet):
    level = df.ChoiceFilter(choices=Level.choices, method="filter_level", help_text="Minimum level.")
    logger = df.CharFilter(field_name="logger", lookup_expr="startswith", help_text="Logger name prefix.")
    q = df.CharFilter(field_name="message", lookup_expr="icontains", help_text="Text in the message.")
    request_id = df.CharFilter()
    trace_id = df.CharFilter()
    since = df.IsoDateTimeFilter(field_name="timestamp", lookup_expr="gte")
    until = df.IsoDateTimeFilter(field_name="timestamp", lookup_expr="lt")

    class Meta:
        model = LogRecord
        fields = []

    def filter_level(self, queryset, name, value):
        return queryset.filter(levelno__gte=_LEVELNO[value])


class AlertFilter(FilterSet):
    state = df.MultipleChoiceFilter(choices=AlertState.choices)
    severity = df.ChoiceFilter(choices=Severity.choices)
    rule = df.UUIDFilter(field_name="rule_id")
    since = df.IsoDateTimeFilter(field_name="fired_at", lookup_expr="gte")

    class Meta:
        model = Alert
        fields = []


class AlertRuleFilter(FilterSet):
    class Meta:
        model = AlertRule
        fields = ["metric", "severity", "enabled"]
