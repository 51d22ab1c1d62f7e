"""Reads: permission-filtered querysets, traces, metrics aggregates, alert metric values, health.

Visibility (documented in the API): admins see everything. Other users see the events they
are the actor of, the traces whose root span they started, the log records written while
they were the request user, and the alerts they own; `GET /metrics` is scoped the same way.
"""

import time
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Avg, Count, F, Max, Min, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Trunc
from django.utils import timezone

from agentmesh.core.aggregates import percentiles
from agentmesh.core.permissions import is_admin

from . import buffer
from .models import (
    OPEN_STATES,
    Alert,
    AlertRule,
    LogRecord,
    ObservabilityEvent,
    PipelineState,
    RequestSample,
    Span,
    SpanStatus,
)

WINDOWS = {"15m": 15, "1h": 60, "6h": 360, "24h": 1440, "7d": 10080, "30d": 43200}
BUCKETS = ("minute", "hour", "day")


def events_visible(user) -> QuerySet:
    qs = ObservabilityEvent.objects.all()
    return qs if is_admin(user) else qs.filter(actor=user)


def logs_visible(user) -> QuerySet:
    qs = LogRecord.objects.all()
    return qs if is_admin(user) else qs.filter(user_id=user.pk).defer("exception")  # tracebacks: admins only


def alerts_visible(user) -> QuerySet:
    qs = Alert.objects.select_related("rule", "owner", "acknowledged_by", "resolved_by")
    return qs if is_admin(user) else qs.filter(owner=user)


def _trace_sum(field: str):
    return Coalesce(
        Subquery(
            Span.objects.filter(trace_id=OuterRef("trace_id"))
            .order_by()
            .values("trace_id")
            .annotate(total=Sum(field))
            .values("total")[:1]
        ),
        Value(0),
        output_field=Span._meta.get_field(field),
    )


def traces_visible(user) -> QuerySet:
    """Root spans, one per trace, with trace totals (span count, tokens, cost, errors)."""
    roots = Span.objects.filter(parent_span_id="")
    if not is_admin(user):
        roots = roots.filter(user=user)
    span_count = Subquery(
        Span.objects.filter(trace_id=OuterRef("trace_id"))
        .order_by()
        .values("trace_id")
        .annotate(n=Count("id"))
        .values("n")[:1]
    )
    error_count = Subquery(
        Span.objects.filter(trace_id=OuterRef("trace_id"), status=SpanStatus.ERROR)
        .order_by()
        .values("trace_id")
        .annotate(n=Count("id"))
        .values("n")[:1]
    )
    return roots.annotate(
        span_count=Coalesce(span_count, Value(0)),
        error_count=Coalesce(error_count, Value(0)),
        total_input_tokens=_trace_sum("input_tokens"),
        total_output_tokens=_trace_sum("output_tokens"),
        total_cost_usd=_trace_sum("cost_usd"),
    )


def trace_spans(*, user, trace_id: str) -> list[Span] | None:
    """The spans of a trace in tree order (depth-first, by start), each with `depth`;
    None if the user may not see the trace."""
    spans = list(Span.objects.filter(trace_id=trace_id).order_by("start_time", "span_id"))
    if not spans or not (is_admin(user) or any(s.user_id == user.pk for s in spans)):
        return None
    by_parent: dict[str, list[Span]] = {}
    ids = {s.span_id for s in spans}
    for s in spans:
        parent = s.parent_span_id if s.parent_span_id in ids else ""
        by_parent.setdefault(parent, []).append(s)
    ordered: list[Span] = []

    def walk(parent: str, depth: int) -> None:
        for child in by_parent.get(parent, []):
            child.depth = depth
            ordered.append(child)
            walk(child.span_id, depth + 1)

    walk("", 0)
    return ordered


# --- metrics ------------------------------------------------------------------------------
def metrics_summary(
    *, user, window: str = "1h", bucket: str | None = None, now: datetime | None = None
) -> dict:
    """Aggregates over the window, cached for OBSERVABILITY_METRICS_CACHE_SECONDS."""
    minutes = WINDOWS[window]
    bucket = bucket or ("minute" if minutes <= 360 else "hour" if minutes <= 10080 else "day")
    scope = "all" if is_admin(user) else "user"
    key = f"obs:metrics:{scope}:{user.pk if scope == 'user' else ''}:{window}:{bucket}"
    cached = cache.get(key) if now is None else None
    if cached is not None:
        return cached
    end = now or timezone.now()
    start = end - timedelta(minutes=minutes)
    requests = RequestSample.objects.filter(timestamp__gte=start, timestamp__lt=end)
    spans = Span.objects.filter(start_time__gte=start, start_time__lt=end)
    events = ObservabilityEvent.objects.filter(timestamp__gte=start, timestamp__lt=end)
    if scope == "user":
        requests = requests.filter(user_id=user.pk)
        spans = spans.filter(user=user)
        events = events.filter(actor=user)

    errors = Q(status__gte=500)
    totals = requests.aggregate(total=Count("id"), errors=Count("id", filter=errors), avg=Avg("duration_ms"))
    series = list(
        requests.annotate(t=Trunc("timestamp", bucket))
        .values("t")
        .annotate(requests=Count("id"), errors=Count("id", filter=errors), avg_ms=Avg("duration_ms"))
        .order_by("t")
    )
    runs = list(
        spans.exclude(kind="http")
        .values("kind", "status")
        .annotate(count=Count("id"), avg_ms=Avg("duration_ms"), max_ms=Max("duration_ms"))
        .order_by("kind", "status")
    )
    usage = spans.filter(kind="llm")
    usage_fields = {
        "calls": Count("id"),
        "input_tokens": Sum("input_tokens"),
        "output_tokens": Sum("output_tokens"),
        "cost_usd": Sum("cost_usd"),
    }

    def usage_by(field: str, name: str) -> list[dict]:
        rows = usage.values(field).annotate(**usage_fields).order_by("-cost_usd", field)
        return [{name: r[field], **{k: r[k] for k in usage_fields}} for r in rows[:50]]

    total = totals["total"]
    result = {
        "window": {"start": start, "end": end, "window": window, "bucket": bucket},
        "scope": scope,
        "requests": {
            "total": total,
            "errors": totals["errors"],
            "error_rate": (totals["errors"] / total) if total else 0.0,
            "latency_ms": {"avg": totals["avg"], **percentiles(requests, "duration_ms")},
            "series": series,
        },
        "runs": runs,
        "usage": {
            "by_model": usage_by("model", "model"),
            "by_agent": usage_by("agent_id", "agent_id"),
            "by_user": usage_by("user_id", "user_id"),
        },
        "events": list(events.values("level").annotate(count=Count("id")).order_by("level")),
    }
    if now is None:
        cache.set(key, result, settings.OBSERVABILITY_METRICS_CACHE_SECONDS)
    return result


def alert_metric_value(*, rule: AlertRule, start: datetime, end: datetime) -> float | None:
    """metric(aggregation) over [start, end), in the database. None if undefined (no rows)."""
    f = rule.filters or {}
    metric, agg = rule.metric, rule.aggregation
    if metric == "events":
        qs = ObservabilityEvent.objects.filter(timestamp__gte=start, timestamp__lt=end)
        if f.get("type_prefix"):
            qs = qs.filter(type__startswith=f["type_prefix"])
        if f.get("level"):
            qs = qs.filter(level=f["level"])
        field = None
    elif metric in ("http_requests", "http_errors"):
        qs = RequestSample.objects.filter(timestamp__gte=start, timestamp__lt=end)
        if metric == "http_errors":
            qs = qs.filter(status__gte=500)
        if f.get("route"):
            qs = qs.filter(route=f["route"])
        if f.get("method"):
            qs = qs.filter(method=f["method"].upper())
        field = "duration_ms"
    else:
        qs = Span.objects.filter(start_time__gte=start, start_time__lt=end)
        if f.get("kind"):
            qs = qs.filter(kind=f["kind"])
        if f.get("model"):
            qs = qs.filter(model=f["model"])
        if metric == "span_errors":
            qs = qs.filter(status=SpanStatus.ERROR)
        field = {
            "span_errors": "duration_ms",
            "span_duration_ms": "duration_ms",
            "tokens": "total_tokens",
            "cost_usd": "cost_usd",
        }[metric]
        if metric == "tokens":
            qs = qs.annotate(total_tokens=F("input_tokens") + F("output_tokens"))
        if metric == "span_duration_ms":
            qs = qs.filter(duration_ms__isnull=False)
    if agg == "count" or field is None:
        return float(qs.count())
    if agg == "p95":
        value = percentiles(qs, field, (0.95,))["p95"]
    else:
        func = {"sum": Sum, "avg": Avg, "min": Min, "max": Max}[agg]
        value = qs.aggregate(v=func(field))["v"]
        if value is None and agg == "sum":
            value = 0
    return None if value is None else float(value)


def pipeline_health() -> dict:
    """Recording lag, log sink state, last alert evaluation and last prune."""
    stats = buffer.stats()
    states = {s.key: s for s in PipelineState.objects.filter(key__in=["alert_evaluation", "retention"])}
    evaluation = states.get("alert_evaluation")
    retention = states.get("retention")
    now = timezone.now()
    eval_age = (now - evaluation.updated_at).total_seconds() if evaluation else None
    latest = ObservabilityEvent.objects.order_by("-timestamp").values_list("timestamp", flat=True).first()
    t0 = time.perf_counter()
    db_ok = True
    try:
        LogRecord.objects.order_by().values_list("id", flat=True).first()
    except Exception:
        db_ok = False
    db_ms = (time.perf_counter() - t0) * 1000
    stale_after = settings.OBSERVABILITY_ALERT_EVALUATION_STALE_SECONDS
    problems = []
    if not db_ok:
        problems.append("database unreachable")
    if stats["last_flush_error"]:
        problems.append("log/metric buffer flush failing")
    if stats["oldest_pending_age_seconds"] > 10 * max(settings.OBSERVABILITY_FLUSH_SECONDS, 1):
        problems.append("recording lag")
    if AlertRule.objects.filter(enabled=True).exists() and (eval_age is None or eval_age > stale_after):
        problems.append("alert evaluation is not running")
    return {
        "status": "ok" if not problems else "degraded",
        "problems": problems,
        "recording": {
            "lag_seconds": stats["oldest_pending_age_seconds"],
            "pending": stats["pending"],
            "latest_event_at": latest,
            "database_ms": round(db_ms, 3),
        },
        "log_sink": {
            "database_level": settings.OBSERVABILITY_LOG_DB_LEVEL,
            "dropped_records": stats["dropped_logs"],
            "last_flush_error": stats["last_flush_error"],
        },
        "alert_evaluation": {
            "last_run_at": evaluation.updated_at if evaluation else None,
            "age_seconds": eval_age,
            "summary": evaluation.value if evaluation else None,
        },
        "retention": {
            "last_run_at": retention.updated_at if retention else None,
            "summary": retention.value if retention else None,
        },
    }


def request_error_rate(*, start: datetime, end: datetime) -> dict:
    """API requests and 5xx answers in [start, end) (the system's error-rate check): one query."""
    totals = RequestSample.objects.filter(timestamp__gte=start, timestamp__lt=end).aggregate(
        total=Count("id"), errors=Count("id", filter=Q(status__gte=500))
    )
    total = totals["total"]
    return {**totals, "rate": (totals["errors"] / total) if total else 0.0}


def open_alerts(*, limit: int = 200) -> list[Alert]:
    """Firing and acknowledged alerts of every owner, newest first (the system's alert list)."""
    return list(
        Alert.objects.filter(state__in=OPEN_STATES).select_related("rule").order_by("-fired_at")[:limit]
    )
