"""Export finished spans to an OpenTelemetry collector (OTLP over HTTP/protobuf).

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set: then every finished span is also handed to
the official SDK's `BatchSpanProcessor` + `OTLPSpanExporter` (a background thread posts
batches to `<endpoint>/v1/traces`). Our own ids are kept, so a trace in the collector and
in GET /traces is the same trace. When the setting is empty `export_span` costs one
settings read and no SDK object is ever built.

The exporter's HTTP goes to the collector the operator configured (a setting, never user
input), so it does not go through the SSRF-guarded `safe_http` client. The SDK's own
environment variables still apply to it (e.g. `OTEL_EXPORTER_OTLP_HEADERS` for auth,
`OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_BSP_*` for batching).
"""

import atexit
import json
import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings

logger = logging.getLogger("observability.otlp")

TRACES_PATH = "/v1/traces"
FLUSH_TIMEOUT_MILLIS = 10_000

_lock = threading.Lock()
_state: tuple[tuple[str, str], Any] | None = None  # ((endpoint, service name), BatchSpanProcessor)
_scope = None
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PRIMITIVES = (str, bool, int, float)


def traces_url(endpoint: str) -> str:
    """OTel convention: the setting is the collector's base URL; traces go to /v1/traces."""
    endpoint = endpoint.strip()
    if endpoint.rstrip("/").endswith(TRACES_PATH):
        return endpoint
    return endpoint.rstrip("/") + TRACES_PATH


def _build(endpoint: str, service_name: str):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": service_name})
    processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint)))
    return resource, processor


def _processor(endpoint: str):
    """The (resource, processor) pair for the current settings, built on first use and
    rebuilt (the old one shut down) when the endpoint or service name changes."""
    global _state
    key = (endpoint, settings.OTEL_SERVICE_NAME or "agentmesh")
    state = _state
    if state is not None and state[0] == key:
        return state[1]
    with _lock:
        if _state is not None and _state[0] == key:
            return _state[1]
        old, _state = _state, (key, _build(*key))
    if old is not None:
        _shutdown_processor(old[1][1])
    return _state[1]


def _shutdown_processor(processor) -> None:
    try:
        processor.shutdown()
    except Exception:
        logger.warning("shutting down the OTLP span processor failed", exc_info=True)


def _ns(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return (value - _EPOCH) // timedelta(microseconds=1) * 1000
    return int(value)


def _attribute(value):
    """OTLP attribute values: str/bool/int/float or a homogeneous list of those."""
    if type(value) in _PRIMITIVES:
        return value
    if isinstance(value, list | tuple):
        types = {type(v) for v in value}
        if len(types) <= 1 and types <= set(_PRIMITIVES):
            return tuple(value)
    return json.dumps(value, default=str, sort_keys=True)


def _attributes(attrs: Mapping, kind: str) -> dict:
    out = {str(k): _attribute(v) for k, v in (attrs or {}).items() if v is not None}
    out.setdefault("agentmesh.span.kind", kind)
    return out


def _readable_span(record, resource):
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    global _scope
    if _scope is None:
        _scope = InstrumentationScope("agentmesh.observability")
    get = (
        record.get if isinstance(record, Mapping) else lambda key, default=None: getattr(record, key, default)
    )
    trace_id = int(get("trace_id"), 16)
    sampled = TraceFlags(TraceFlags.SAMPLED)
    context = SpanContext(
        trace_id=trace_id, span_id=int(get("span_id"), 16), is_remote=False, trace_flags=sampled
    )
    parent_id = get("parent_span_id") or ""
    parent = (
        SpanContext(trace_id=trace_id, span_id=int(parent_id, 16), is_remote=False, trace_flags=sampled)
        if parent_id
        else None
    )
    kind = str(get("kind") or "internal")
    otel_kind = {
        "http": SpanKind.CLIENT,
        "webhook": SpanKind.CLIENT,
        "llm": SpanKind.CLIENT,
        "tool": SpanKind.CLIENT,
        "task": SpanKind.CONSUMER,
    }.get(kind, SpanKind.INTERNAL)
    status = str(get("status") or "")
    if status == "error":
        otel_status = Status(StatusCode.ERROR, str(get("error") or "") or None)
    elif status == "ok":
        otel_status = Status(StatusCode.OK)
    else:
        otel_status = Status(StatusCode.UNSET)
    start = _ns(get("start_time"))
    end = _ns(get("end_time"))
    if end is None and start is not None and get("duration_ms") is not None:
        end = start + int(float(get("duration_ms")) * 1_000_000)
    return ReadableSpan(
        name=str(get("name") or ""),
        context=context,
        parent=parent,
        resource=resource,
        attributes=_attributes(get("attributes") or {}, kind),
        kind=otel_kind,
        status=otel_status,
        start_time=start,
        end_time=end,
        instrumentation_scope=_scope,
    )


def export_span(record) -> None:
    """Queue one finished span for export (a dict of Span fields or a Span instance).

    No-op when OTEL_EXPORTER_OTLP_ENDPOINT is empty. Never raises.
    """
    endpoint = settings.OTEL_EXPORTER_OTLP_ENDPOINT
    if not endpoint:
        return
    try:
        resource, processor = _processor(endpoint)
        processor.on_end(_readable_span(record, resource))
    except Exception:
        logger.warning("exporting a span over OTLP failed", exc_info=True)


def is_built() -> bool:
    return _state is not None


def force_flush(timeout_millis: int = FLUSH_TIMEOUT_MILLIS) -> bool:
    """Export every queued span now (blocks until the exporter returns). Never raises."""
    state = _state
    if state is None:
        return True
    try:
        return bool(state[1][1].force_flush(timeout_millis))
    except Exception:
        logger.warning("flushing OTLP spans failed", exc_info=True)
        return False


def shutdown() -> None:
    """Flush and stop the exporter; the next exported span builds a new one."""
    global _state
    with _lock:
        old, _state = _state, None
    if old is not None:
        _shutdown_processor(old[1][1])


atexit.register(shutdown)
