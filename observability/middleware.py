"""Request context middleware: request id, trace context, request metrics, permission denials."""

import logging
import re
import time
import uuid

from django.urls import NoReverseMatch, reverse

from agentmesh.core import audit, features

from . import buffer, metrics, services
from .context import (
    SpanBatch,
    TraceContext,
    activate,
    deactivate,
    new_span_id,
    new_trace_id,
    parse_traceparent,
)
from .logs import _request_user_id
from .models import Level, RequestSample, SpanKind, SpanStatus

logger = logging.getLogger("observability.recording")

REQUEST_ID_HEADER = "X-Request-ID"
TRACE_ID_HEADER = "X-Trace-ID"
_valid_request_id = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
SKIP_PREFIXES = ("/static/", "/favicon.ico")
_admin_prefix: list[str] = []


def audit_channel(path: str) -> str:
    """Writes under the admin site are `admin`, every other request's `api`."""
    if not _admin_prefix:
        try:
            _admin_prefix.append(reverse("admin:index"))
        except NoReverseMatch:
            _admin_prefix.append("\0")  # no admin site mounted
    return "admin" if path.startswith(_admin_prefix[0]) else "api"


class RequestContextMiddleware:
    """Opens the trace context of a request and records it.

    - `X-Request-ID` is taken from the request (if well-formed) or generated, and returned.
    - A W3C `traceparent` header continues the caller's trace; otherwise a new trace starts.
      `X-Trace-ID` is returned.
    - Each request adds a `RequestSample` (route template, status, latency) and the
      Prometheus request counters, buffered.
    - The request's own `http` span is written only if something hangs under it (a span or
      a Celery task published during the request), so plain reads do not flood the traces.
      It and the spans that finished during the request go to the write buffer like the
      samples (a trace is complete in the database within OBSERVABILITY_FLUSH_SECONDS).
    - The feature flags evaluated while serving the request ({name: on?}) are recorded on its
      span as the `feature_flags` attribute (and make the span be written), for A/B splits.
    - A 403 answer records an `auth.permission_denied` event.
    - Writes made during the request are audited as the request's user, through `api` or
      `admin` (agentmesh.core.audit).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(SKIP_PREFIXES):
            return self.get_response(request)
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _valid_request_id.match(incoming) else uuid.uuid4().hex
        parent = parse_traceparent(request.headers.get("traceparent"))
        trace_id, parent_span_id = parent if parent else (new_trace_id(), "")
        ctx = TraceContext(
            trace_id=trace_id,
            span_id=new_span_id(),
            request_id=request_id,
            request=request,
            span_batch=SpanBatch(),
        )
        request.request_id = request_id
        token = activate(ctx)
        flags_token = features.track_flags()
        audit_token = audit.activate(audit.AuditContext(channel=audit_channel(request.path), request=request))
        start_wall = time.time()
        t0 = time.perf_counter()
        response = None
        try:
            response = self.get_response(request)
            return response
        finally:
            seconds = time.perf_counter() - t0
            try:
                self._record(request, response, ctx, parent_span_id, start_wall, seconds)
            except Exception:
                logger.warning("recording request failed", exc_info=True)
            finally:
                deactivate(token)
                audit.deactivate(audit_token)
                features.untrack_flags(flags_token)

    def _record(self, request, response, ctx, parent_span_id, start_wall, seconds) -> None:
        status = response.status_code if response is not None else 500
        if response is not None:
            response[REQUEST_ID_HEADER] = ctx.request_id
            response[TRACE_ID_HEADER] = ctx.trace_id
        route = metrics.route_template(request)
        method = request.method
        user_id = _request_user_id(request)
        metrics.record_http_request(method=method, route=route, status=status, seconds=seconds)
        from datetime import UTC, datetime

        buffer.BUFFER.add_sample(
            RequestSample(
                timestamp=datetime.fromtimestamp(start_wall, tz=UTC),
                method=method[:8],
                route=route[:200],
                status=status,
                duration_ms=seconds * 1000,
                user_id=user_id,
            )
        )
        if status == 403 and request.path.startswith("/api/"):
            services.event_record(
                type="auth.permission_denied",
                level=Level.WARNING,
                source="api",
                actor=user_id,
                message=f"{method} {route}",
                payload={"method": method, "route": route, "path": request.path[:300]},
            )
        finished = ctx.span_batch.close()
        flags = features.served_flags()  # the feature flags the request was served under
        if ctx.root_referenced[0] or flags:
            self._write_spans(
                finished, ctx, parent_span_id, method, route, status, start_wall, seconds, user_id, flags
            )
        buffer.flush_if_due()

    @staticmethod
    def _write_spans(
        finished, ctx, parent_span_id, method, route, status, start_wall, seconds, user_id, flags
    ):
        from datetime import UTC, datetime, timedelta

        from . import otlp
        from .models import Span

        start = datetime.fromtimestamp(start_wall, tz=UTC)
        root = Span(
            trace_id=ctx.trace_id,
            span_id=ctx.span_id,
            parent_span_id=parent_span_id,
            name=f"{method} {route}",
            kind=SpanKind.HTTP,
            start_time=start,
            end_time=start + timedelta(seconds=seconds),
            duration_ms=seconds * 1000,
            status=SpanStatus.ERROR if status >= 500 else SpanStatus.OK,
            attributes={
                "http.request.method": method,
                "http.route": route,
                "http.response.status_code": status,
                "agentmesh.request_id": ctx.request_id,
                # {flag: on?} for A/B splits: Span.objects.filter(attributes__feature_flags__streaming=True)
                **({"feature_flags": flags} if flags else {}),
            },
            user_id=user_id,
        )
        buffer.BUFFER.add_spans([root, *(Span(**values) for values in finished)])
        otlp.export_span(root)
