import re
from datetime import UTC, datetime

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agentmesh.core.permissions import is_admin
from agentmesh.core.serializers import OwnerField, StrictModelSerializer, StrictSerializer

from ..models import (
    Aggregation,
    Alert,
    AlertMetric,
    AlertRule,
    Level,
    LogRecord,
    ObservabilityEvent,
    Severity,
    Span,
    webhook_url_problem,
)
from ..selectors import BUCKETS, WINDOWS

EVENT_TYPE_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_\-]+)*$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
_LEVELS = frozenset(Level.values)
_STR_LIMITS = {"source": 50, "resource_type": 100, "resource_id": 64, "message": 500}
EVENT_INPUT_FIELDS = frozenset({"type", "level", "timestamp", "payload", "trace_id", "span_id", *_STR_LIMITS})


# --- events -------------------------------------------------------------------------------
class EventInSerializer(StrictSerializer):
    """One event to record (the schema of POST /events; validated by `clean_event_item`)."""

    type = serializers.RegexField(EVENT_TYPE_RE, max_length=100, help_text="Dotted, e.g. `agent.deployed`.")
    level = serializers.ChoiceField(choices=Level.choices, default=Level.INFO)
    timestamp = serializers.DateTimeField(required=False, help_text="Defaults to the time of receipt.")
    source = serializers.CharField(max_length=50, required=False, allow_blank=True)
    resource_type = serializers.CharField(max_length=100, required=False, allow_blank=True)
    resource_id = serializers.CharField(max_length=64, required=False, allow_blank=True)
    message = serializers.CharField(max_length=500, required=False, allow_blank=True)
    trace_id = serializers.RegexField(HEX32, required=False, allow_blank=True)
    span_id = serializers.RegexField(HEX16, required=False, allow_blank=True)
    payload = serializers.DictField(required=False)


def _err(field: str, message: str, code: str = "invalid") -> dict:
    return {"field": field, "code": code, "message": message}


def clean_event_item(item) -> tuple[dict | None, list[dict]]:
    """Validate one event with the rules of `EventInSerializer`, fast (batch ingestion runs
    this 1,000 times per request). Returns (clean data, []) or (None, errors)."""
    if not isinstance(item, dict):
        return None, [_err("", "Expected an object.", "not_a_dict")]
    errors = []
    unknown = item.keys() - EVENT_INPUT_FIELDS
    errors.extend(_err(name, "Unknown field.", "unknown_field") for name in sorted(unknown))
    etype = item.get("type")
    if not etype:
        errors.append(_err("type", "This field is required.", "required"))
    elif not isinstance(etype, str) or len(etype) > 100 or not EVENT_TYPE_RE.match(etype):
        errors.append(
            _err("type", "Use a dotted lower-case name of at most 100 characters, e.g. agent.deployed.")
        )
    level = item.get("level", Level.INFO)
    if level not in _LEVELS:
        errors.append(_err("level", f'"{level}" is not a valid choice.', "invalid_choice"))
    clean = {"type": etype, "level": level}
    for name, limit in _STR_LIMITS.items():
        value = item.get(name, "")
        if not isinstance(value, str):
            errors.append(_err(name, "Not a valid string."))
        elif len(value) > limit:
            errors.append(_err(name, f"Ensure this field has no more than {limit} characters.", "max_length"))
        else:
            clean[name] = value
    for name, pattern in (("trace_id", HEX32), ("span_id", HEX16)):
        value = item.get(name, "")
        if value and (not isinstance(value, str) or not pattern.match(value)):
            errors.append(_err(name, f"Expected {pattern.pattern[2:-1]} (lower-case hex)."))
        clean[name] = value or ""
    payload = item.get("payload", {})
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        errors.append(_err("payload", "Expected an object.", "not_a_dict"))
    clean["payload"] = payload
    ts = item.get("timestamp")
    if ts not in (None, ""):
        try:
            parsed = datetime.fromisoformat(ts)
            # In UTC: PostgreSQL refuses offsets past ±15:59 that Python accepts.
            clean["timestamp"] = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
        except (TypeError, ValueError, OverflowError):
            errors.append(_err("timestamp", "Datetime has wrong format. Use ISO 8601."))
    return (None, errors) if errors else (clean, [])


class EventSerializer(StrictModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = ObservabilityEvent
        fields = [
            "id",
            "timestamp",
            "type",
            "level",
            "source",
            "actor",
            "actor_id",
            "resource_type",
            "resource_id",
            "message",
            "trace_id",
            "span_id",
            "request_id",
            "payload",
        ]
        read_only_fields = fields


class BatchItemErrorSerializer(StrictSerializer):
    field = serializers.CharField(allow_null=True)
    code = serializers.CharField()
    message = serializers.CharField()


class BatchItemResultSerializer(StrictSerializer):
    index = serializers.IntegerField()
    status = serializers.IntegerField(help_text="201 created, 400 invalid.")
    id = serializers.UUIDField(required=False)
    errors = BatchItemErrorSerializer(many=True, required=False)


class EventBatchResultSerializer(StrictSerializer):
    created = serializers.IntegerField()
    failed = serializers.IntegerField()
    results = BatchItemResultSerializer(many=True)


# --- traces -------------------------------------------------------------------------------
SPAN_FIELDS = [
    "span_id",
    "parent_span_id",
    "trace_id",
    "name",
    "kind",
    "start_time",
    "end_time",
    "duration_ms",
    "status",
    "error",
    "attributes",
    "user_id",
    "model",
    "agent_id",
    "input_tokens",
    "output_tokens",
    "cost_usd",
]


_SPAN_STATUS_HELP = "`unset` (still running), `ok` or `error`."


class SpanSerializer(StrictModelSerializer):
    status = serializers.CharField(read_only=True, help_text=_SPAN_STATUS_HELP)
    depth = serializers.IntegerField(read_only=True, default=0)

    class Meta:
        model = Span
        fields = [*SPAN_FIELDS, "depth"]
        read_only_fields = fields


class TraceSerializer(StrictModelSerializer):
    """A trace, described by its root span and totals over all its spans."""

    root_span_id = serializers.CharField(source="span_id")
    status = serializers.CharField(read_only=True, help_text=_SPAN_STATUS_HELP)
    span_count = serializers.IntegerField()
    error_count = serializers.IntegerField()
    total_input_tokens = serializers.IntegerField()
    total_output_tokens = serializers.IntegerField()
    total_tokens = serializers.SerializerMethodField()
    total_cost_usd = serializers.DecimalField(max_digits=14, decimal_places=6)

    class Meta:
        model = Span
        fields = [
            "trace_id",
            "root_span_id",
            "name",
            "kind",
            "start_time",
            "end_time",
            "duration_ms",
            "status",
            "error",
            "user_id",
            "span_count",
            "error_count",
            "total_input_tokens",
            "total_output_tokens",
            "total_tokens",
            "total_cost_usd",
        ]
        read_only_fields = fields

    def get_total_tokens(self, obj) -> int:
        return (obj.total_input_tokens or 0) + (obj.total_output_tokens or 0)


class TraceDetailSerializer(StrictSerializer):
    trace_id = serializers.CharField()
    root_span_id = serializers.CharField()
    spans = SpanSerializer(many=True, help_text="Depth-first tree order; `parent_span_id` links, `depth`.")


# --- logs ---------------------------------------------------------------------------------
class LogRecordSerializer(StrictModelSerializer):
    exception = serializers.SerializerMethodField(help_text="The traceback: admins only (null for others).")

    class Meta:
        model = LogRecord
        fields = [
            "id",
            "timestamp",
            "level",
            "logger",
            "message",
            "request_id",
            "trace_id",
            "span_id",
            "user_id",
            "process",
            "exception",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_exception(self, record) -> str | None:
        # Tracebacks show code and data of the server: only admins read them (the selector
        # does not even load them for others).
        request = self.context.get("request")
        return record.exception if request is not None and is_admin(request.user) else None


# --- metrics and health -------------------------------------------------------------------
class MetricsQuerySerializer(serializers.Serializer):
    window = serializers.ChoiceField(choices=list(WINDOWS), default="1h")
    bucket = serializers.ChoiceField(choices=list(BUCKETS), required=False)


class _WindowSerializer(StrictSerializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    window = serializers.CharField()
    bucket = serializers.CharField()


class _LatencySerializer(StrictSerializer):
    avg = serializers.FloatField(allow_null=True)
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)
    p99 = serializers.FloatField(allow_null=True)


class _BucketSerializer(StrictSerializer):
    t = serializers.DateTimeField()
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    avg_ms = serializers.FloatField(allow_null=True)


class _RequestsSerializer(StrictSerializer):
    total = serializers.IntegerField()
    errors = serializers.IntegerField()
    error_rate = serializers.FloatField()
    latency_ms = _LatencySerializer()
    series = _BucketSerializer(many=True)


class _RunsSerializer(StrictSerializer):
    kind = serializers.CharField()
    status = serializers.CharField()
    count = serializers.IntegerField()
    avg_ms = serializers.FloatField(allow_null=True)
    max_ms = serializers.FloatField(allow_null=True)


class _UsageRowSerializer(StrictSerializer):
    model = serializers.CharField(required=False)
    agent_id = serializers.CharField(required=False)
    user_id = serializers.IntegerField(required=False, allow_null=True)
    calls = serializers.IntegerField()
    input_tokens = serializers.IntegerField(allow_null=True)
    output_tokens = serializers.IntegerField(allow_null=True)
    cost_usd = serializers.DecimalField(max_digits=14, decimal_places=6, allow_null=True)


class _UsageSerializer(StrictSerializer):
    by_model = _UsageRowSerializer(many=True)
    by_agent = _UsageRowSerializer(many=True)
    by_user = _UsageRowSerializer(many=True)


class _EventCountSerializer(StrictSerializer):
    level = serializers.CharField()
    count = serializers.IntegerField()


class ObservabilityMetricsSerializer(StrictSerializer):
    window = _WindowSerializer()
    scope = serializers.ChoiceField(choices=["all", "user"], help_text="`user`: only your own activity.")
    requests = _RequestsSerializer()
    runs = _RunsSerializer(many=True)
    usage = _UsageSerializer()
    events = _EventCountSerializer(many=True)


class ObservabilityHealthSerializer(StrictSerializer):
    status = serializers.CharField(help_text="`ok` or `degraded`.")
    problems = serializers.ListField(child=serializers.CharField())
    recording = serializers.DictField()
    log_sink = serializers.DictField()
    alert_evaluation = serializers.DictField()
    retention = serializers.DictField()


# --- alerts -------------------------------------------------------------------------------
CHANNEL_TYPES = ("log", "webhook")


class ChannelSerializer(StrictSerializer):
    type = serializers.ChoiceField(choices=CHANNEL_TYPES)
    url = serializers.URLField(required=False, max_length=500)

    def validate(self, attrs):
        if attrs["type"] == "webhook":
            if not attrs.get("url"):
                raise serializers.ValidationError({"url": ["A webhook channel needs a url."]})
            problem = webhook_url_problem(attrs["url"])
            if problem:
                raise serializers.ValidationError({"url": [problem]})
        return attrs


RULE_FILTER_KEYS = {"type_prefix", "level", "route", "method", "kind", "model"}
VALUE_METRICS = {
    AlertMetric.EVENTS: {Aggregation.COUNT},
    AlertMetric.HTTP_ERRORS: {Aggregation.COUNT},
    AlertMetric.SPAN_ERRORS: {Aggregation.COUNT},
}


class AlertRuleSerializer(StrictModelSerializer):
    owner = OwnerField()
    channels = ChannelSerializer(many=True, required=False)
    filters = serializers.DictField(child=serializers.CharField(max_length=200), required=False)
    window_minutes = serializers.IntegerField(min_value=1, max_value=1440, default=5)

    class Meta:
        model = AlertRule
        fields = [
            "id",
            "name",
            "description",
            "metric",
            "aggregation",
            "comparison",
            "threshold",
            "window_minutes",
            "severity",
            "filters",
            "channels",
            "enabled",
            "last_evaluated_at",
            "last_value",
            "owner",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["last_evaluated_at", "last_value"]

    def validate_filters(self, value):
        unknown = set(value) - RULE_FILTER_KEYS
        if unknown:
            raise serializers.ValidationError(f"Unknown filter(s): {', '.join(sorted(unknown))}.")
        return value

    def validate(self, attrs):
        metric = attrs.get("metric", getattr(self.instance, "metric", None))
        agg = attrs.get("aggregation", getattr(self.instance, "aggregation", Aggregation.COUNT))
        allowed = VALUE_METRICS.get(metric)
        if allowed and agg not in allowed:
            raise serializers.ValidationError({"aggregation": [f"{metric} supports only: count."]})
        if metric in (AlertMetric.TOKENS, AlertMetric.COST) and agg == Aggregation.COUNT:
            raise serializers.ValidationError({"aggregation": [f"{metric} needs sum, avg, min, max or p95."]})
        return attrs


class AlertSerializer(StrictModelSerializer):
    owner = OwnerField()
    acknowledged_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    resolved_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "rule",
            "title",
            "message",
            "severity",
            "state",
            "dedup_key",
            "value",
            "occurrences",
            "fired_at",
            "last_seen_at",
            "acknowledged_at",
            "acknowledged_by",
            "resolved_at",
            "resolved_by",
            "owner",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class AlertCreateSerializer(StrictSerializer):
    """A manual alert (rules raise theirs by themselves; create rules at /alert-rules)."""

    title = serializers.CharField(max_length=200)
    message = serializers.CharField(required=False, allow_blank=True, default="")
    severity = serializers.ChoiceField(choices=Severity.choices, default=Severity.WARNING)
    dedup_key = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text="While an alert with this key is open, posting again bumps its occurrences.",
    )
    value = serializers.FloatField(required=False, allow_null=True, default=None)
