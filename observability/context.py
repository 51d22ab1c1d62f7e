"""The current request / trace context, carried in contextvars (threads, asyncio, Celery tasks).

The request middleware opens it for an HTTP request, the Celery signal handlers for a task
(from the message headers), `span()` for a nested operation.
"""

import contextvars
import secrets
import threading
from dataclasses import dataclass, field

TRACEPARENT_HEADER = "traceparent"
CELERY_HEADER = "agentmesh_trace"


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


class SpanBatch:
    """Finished spans of one request, written with its root span in one INSERT when the
    request ends. After that (a streamed response still running) `add` refuses and the
    caller writes the span itself."""

    def __init__(self) -> None:
        self._rows: list[dict] = []
        self._closed = False
        self._lock = threading.Lock()

    def add(self, row: dict) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._rows.append(row)
            return True

    def close(self) -> list[dict]:
        with self._lock:
            self._closed = True
            rows, self._rows = self._rows, []
            return rows


@dataclass
class TraceContext:
    trace_id: str
    span_id: str = ""  # the current (innermost) span; parent of the next one
    request_id: str = ""
    user_id: int | None = None
    request: object = None  # the HttpRequest, to find the user DRF authenticates later
    # Set when something (a child span, a published task) refers to the root span, so the
    # HTTP root span is written at the end of the request only when it is part of a tree.
    root_referenced: list[bool] = field(default_factory=lambda: [False])
    span_batch: SpanBatch | None = None  # shared by the nested contexts of one request


_current: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar(
    "agentmesh_trace", default=None
)


def current() -> TraceContext | None:
    return _current.get()


def activate(ctx: TraceContext | None) -> contextvars.Token:
    return _current.set(ctx)


def deactivate(token: contextvars.Token) -> None:
    try:
        _current.reset(token)
    except ValueError:  # reset from another context (e.g. a task signal in another thread)
        _current.set(None)


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """W3C `traceparent`: 00-<32 hex trace id>-<16 hex parent id>-<flags>."""
    if not value:
        return None
    parts = value.strip().split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        int(parts[1], 16)
        int(parts[2], 16)
    except ValueError:
        return None
    if set(parts[1]) == {"0"} or set(parts[2]) == {"0"}:
        return None
    return parts[1], parts[2]


def headers_for_task() -> dict | None:
    """The trace header a published Celery task carries (None outside any context)."""
    ctx = current()
    if ctx is None:
        return None
    ctx.root_referenced[0] = True
    return {
        "trace_id": ctx.trace_id,
        "parent_span_id": ctx.span_id,
        "request_id": ctx.request_id,
        "user_id": ctx.user_id,
    }
