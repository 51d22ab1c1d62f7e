"""Recorded observability data: events (also the audit trail), spans, logs, request samples,
metric counters; and the alerting configuration (rules, alerts).

Recorded tables are append-mostly and narrow: a UUID (or big integer) key, a timestamp and
the few indexed columns the filters use. Everything else sits in a JSON column.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from agentmesh.core.models import OwnedModel, TimeStampedModel, object_permission_models


class Level(models.TextChoices):
    DEBUG = "debug", "Debug"
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"
    CRITICAL = "critical", "Critical"


class ObservabilityEvent(models.Model):
    """Something that happened: `agent.deployed`, `audit.create`, `auth.login_failed` …"""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    timestamp = models.DateTimeField()
    type = models.CharField(max_length=100)
    level = models.CharField(max_length=10, choices=Level.choices, default=Level.INFO)
    source = models.CharField(max_length=50, blank=True, help_text="App or service that recorded it.")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    resource_type = models.CharField(max_length=100, blank=True)
    resource_id = models.CharField(max_length=64, blank=True)
    trace_id = models.CharField(max_length=32, blank=True)
    span_id = models.CharField(max_length=16, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    message = models.CharField(max_length=500, blank=True)
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-timestamp", "-id"]
        verbose_name = "event"
        indexes = [
            models.Index(fields=["-timestamp", "-id"], name="obs_event_ts"),
            models.Index(fields=["type", "timestamp"], name="obs_event_type"),
            models.Index(fields=["actor", "timestamp"], name="obs_event_actor"),
            models.Index(fields=["resource_type", "resource_id"], name="obs_event_resource"),
            models.Index(fields=["trace_id"], name="obs_event_trace"),
        ]

    def __str__(self) -> str:
        return f"{self.type} @ {self.timestamp:%Y-%m-%d %H:%M:%S}"


class Event(ObservabilityEvent):
    """The same rows under the admin's short address, /admin/observability/event/."""

    class Meta:
        proxy = True
        verbose_name = "event"


class SpanKind(models.TextChoices):
    WORKFLOW = "workflow", "Workflow"
    STEP = "step", "Step"
    AGENT = "agent", "Agent"
    LLM = "llm", "LLM call"
    TOOL = "tool", "Tool call"
    HTTP = "http", "HTTP"
    WEBHOOK = "webhook", "Webhook"
    TASK = "task", "Task"
    INTERNAL = "internal", "Internal"


class SpanStatus(models.TextChoices):
    UNSET = "unset", "Unset (running)"
    OK = "ok", "OK"
    ERROR = "error", "Error"


class Span(models.Model):
    """One timed operation of a trace. Attributes use OpenTelemetry GenAI names.

    Token counts, cost, model and agent are copied out of the attributes into columns so the
    metrics can be aggregated in the database.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    trace_id = models.CharField(max_length=32, db_index=True)
    span_id = models.CharField(max_length=16, unique=True)
    parent_span_id = models.CharField(max_length=16, blank=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=SpanKind.choices, default=SpanKind.INTERNAL)
    start_time = models.DateTimeField()
    end_time = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=SpanStatus.choices, default=SpanStatus.UNSET)
    error = models.TextField(blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    model = models.CharField(max_length=100, blank=True)
    agent_id = models.CharField(max_length=64, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)

    class Meta:
        ordering = ["start_time"]
        indexes = [
            models.Index(fields=["-start_time"], name="obs_span_start"),
            models.Index(fields=["kind", "start_time"], name="obs_span_kind"),
            models.Index(fields=["-start_time"], condition=Q(parent_span_id=""), name="obs_span_roots"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.name} ({self.span_id})"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class LogRecord(models.Model):
    """A log line at or above OBSERVABILITY_LOG_DB_LEVEL, kept for GET /logs."""

    id = models.BigAutoField(primary_key=True)
    timestamp = models.DateTimeField()
    level = models.CharField(max_length=10, choices=Level.choices)
    levelno = models.PositiveSmallIntegerField()
    logger = models.CharField(max_length=200)
    message = models.TextField()
    request_id = models.CharField(max_length=64, blank=True)
    trace_id = models.CharField(max_length=32, blank=True)
    span_id = models.CharField(max_length=16, blank=True)
    user_id = models.BigIntegerField(null=True, blank=True)
    process = models.CharField(max_length=64, blank=True)
    exception = models.TextField(blank=True)

    class Meta:
        ordering = ["-timestamp", "-id"]
        verbose_name = "log record"
        indexes = [
            models.Index(fields=["-timestamp", "-id"], name="obs_log_ts"),
            models.Index(fields=["levelno", "timestamp"], name="obs_log_level"),
            models.Index(fields=["trace_id"], name="obs_log_trace"),
            models.Index(fields=["request_id"], name="obs_log_request"),
        ]

    def __str__(self) -> str:
        return f"{self.level} {self.logger}: {self.message[:60]}"


class RequestSample(models.Model):
    """One API request (route template, status, latency): the source of request metrics."""

    id = models.BigAutoField(primary_key=True)
    timestamp = models.DateTimeField()
    method = models.CharField(max_length=8)
    route = models.CharField(max_length=200)
    status = models.PositiveSmallIntegerField()
    duration_ms = models.FloatField()
    user_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-timestamp"]
        indexes = [
            models.Index(fields=["timestamp"], name="obs_req_ts"),
            models.Index(fields=["user_id", "timestamp"], name="obs_req_user"),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.route} {self.status}"


class MetricSeries(models.Model):
    """A Prometheus counter series (histogram buckets are series too), summed over every process."""

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=120)
    labels = models.CharField(max_length=500, help_text="Canonical JSON of the label set.")
    value = models.FloatField(default=0)

    class Meta:
        ordering = ["name", "labels"]
        verbose_name = "metric series"
        verbose_name_plural = "metric series"
        constraints = [models.UniqueConstraint(fields=["name", "labels"], name="obs_metric_series_unique")]

    def __str__(self) -> str:
        return f"{self.name}{self.labels} = {self.value}"


class PipelineState(models.Model):
    """Small key/value facts about the pipeline itself (last alert evaluation, last prune)."""

    key = models.CharField(max_length=50, primary_key=True)
    value = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.key


class AlertMetric(models.TextChoices):
    EVENTS = "events", "Events (count; filters type_prefix, level)"
    HTTP_REQUESTS = "http_requests", "HTTP requests (count or latency ms; filters route, method)"
    HTTP_ERRORS = "http_errors", "HTTP 5xx responses (count)"
    SPAN_ERRORS = "span_errors", "Failed runs/spans (count; filter kind)"
    SPAN_DURATION = "span_duration_ms", "Run/span duration ms (filter kind)"
    TOKENS = "tokens", "LLM tokens (sum; filter model)"
    COST = "cost_usd", "LLM cost in USD (sum; filter model)"


class Aggregation(models.TextChoices):
    COUNT = "count", "Count"
    SUM = "sum", "Sum"
    AVG = "avg", "Average"
    MIN = "min", "Minimum"
    MAX = "max", "Maximum"
    P95 = "p95", "95th percentile"


class Comparison(models.TextChoices):
    GT = "gt", ">"
    GTE = "gte", ">="
    LT = "lt", "<"
    LTE = "lte", "<="
    EQ = "eq", "=="


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


def webhook_url_problem(url: str) -> str | None:
    """Why the safe HTTP client would refuse to deliver to `url` (checked on save; delivery checks
    again, since what a name resolves to can change), or None."""
    from agentmesh.core.safe_http import UnsafeURLError, check_url

    try:
        check_url(url)
    except UnsafeURLError as exc:
        return str(exc)
    return None


class AlertRule(OwnedModel):
    """metric(aggregation over the last `window_minutes`) <comparison> threshold → alert."""

    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    metric = models.CharField(max_length=20, choices=AlertMetric.choices)
    aggregation = models.CharField(max_length=8, choices=Aggregation.choices, default=Aggregation.COUNT)
    comparison = models.CharField(max_length=4, choices=Comparison.choices, default=Comparison.GT)
    threshold = models.FloatField()
    window_minutes = models.PositiveIntegerField(default=5)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.WARNING)
    filters = models.JSONField(default=dict, blank=True)
    channels = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_value = models.FloatField(null=True, blank=True, editable=False)

    # Webhook URLs often carry a token (Slack, Teams): the audit trail masks them.
    SENSITIVE_FIELDS = ("channels",)

    class Meta(OwnedModel.Meta):
        verbose_name = "alert rule"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        for index, channel in enumerate(self.channels if isinstance(self.channels, list) else []):
            if isinstance(channel, dict) and channel.get("type") == "webhook":
                problem = webhook_url_problem(str(channel.get("url") or ""))
                if problem:
                    raise ValidationError({"channels": f"channels[{index}].url: {problem}"})


class AlertState(models.TextChoices):
    FIRING = "firing", "Firing"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


OPEN_STATES = (AlertState.FIRING, AlertState.ACKNOWLEDGED)


class Alert(TimeStampedModel):
    """An alert raised by a rule (or manually through POST /alerts). One open alert per rule."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    rule = models.ForeignKey(
        AlertRule, on_delete=models.CASCADE, null=True, blank=True, related_name="alerts"
    )
    title = models.CharField(max_length=200)
    message = models.TextField(blank=True)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.WARNING)
    state = models.CharField(max_length=12, choices=AlertState.choices, default=AlertState.FIRING)
    dedup_key = models.CharField(max_length=200, blank=True)
    value = models.FloatField(null=True, blank=True)
    occurrences = models.PositiveIntegerField(default=1)
    fired_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta(TimeStampedModel.Meta):
        ordering = ["-fired_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule"],
                condition=Q(state__in=["firing", "acknowledged"]),
                name="obs_one_open_alert_per_rule",
            ),
            models.UniqueConstraint(
                fields=["owner", "dedup_key"],
                condition=Q(state__in=["firing", "acknowledged"], rule__isnull=True) & ~Q(dedup_key=""),
                name="obs_one_open_manual_alert_per_key",
            ),
        ]
        indexes = [models.Index(fields=["state", "-fired_at"], name="obs_alert_state")]

    def __str__(self) -> str:
        return f"[{self.state}] {self.title}"


AlertRuleUserPermission, AlertRuleGroupPermission = object_permission_models(AlertRule)
