"""Structured logging: a context filter, a JSON formatter and the database log handler.

Every line carries request id, user and trace/span ids (from `observability.context`).
Records at or above OBSERVABILITY_LOG_DB_LEVEL are also buffered and written in batches to
`LogRecord` (see `observability.buffer`); the buffer is bounded and drops oldest first.
"""

import json
import logging
import os
import socket
import traceback
from datetime import UTC, datetime

from django.apps import apps
from django.utils.functional import SimpleLazyObject, empty

from . import buffer
from .context import current

_HOST = f"{socket.gethostname()}:{os.getpid()}"

_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}


def level_name(levelno: int) -> str:
    for number in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= number:
            return _LEVELS[number]
    return "debug"


def _request_user_id(request) -> int | None:
    if request is None:
        return None
    user = request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject):
        user = None if user._wrapped is empty else user._wrapped
    if user is not None and getattr(user, "is_authenticated", False):
        return user.pk
    return None


class ContextFilter(logging.Filter):
    """Adds request_id, user_id, trace_id, span_id to every record (empty outside a context)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = current()
        record.request_id = ctx.request_id if ctx else ""
        record.trace_id = ctx.trace_id if ctx else ""
        record.span_id = ctx.span_id if ctx else ""
        user_id = ctx.user_id if ctx else None
        if ctx is not None and user_id is None:
            user_id = _request_user_id(getattr(ctx, "request", None))
        record.user_id = user_id
        return True


_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "request_id",
    "trace_id",
    "span_id",
    "user_id",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request/user/trace ids, extras."""

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            ContextFilter().filter(record)
        data = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": level_name(record.levelno),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": record.request_id,
            "user_id": record.user_id,
            "trace_id": record.trace_id,
            "span_id": record.span_id,
            "process": _HOST,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class DatabaseLogHandler(logging.Handler):
    """Buffers records for the `LogRecord` table. Never raises, never recurses.

    Configure the level with OBSERVABILITY_LOG_DB_LEVEL (handler `level`). Records of the
    database backend and of the recording layer itself are skipped.
    """

    SKIP_PREFIXES = ("django.db.backends", "observability.recording")

    def emit(self, record: logging.LogRecord) -> None:
        if buffer.is_flushing() or record.name.startswith(self.SKIP_PREFIXES) or not apps.ready:
            return
        try:
            from .models import LogRecord

            if not hasattr(record, "request_id"):
                ContextFilter().filter(record)
            exception = ""
            if record.exc_info:
                exception = "".join(traceback.format_exception(*record.exc_info))[-10_000:]
            buffer.BUFFER.add_log(
                LogRecord(
                    timestamp=datetime.fromtimestamp(record.created, tz=UTC),
                    level=level_name(record.levelno),
                    levelno=record.levelno,
                    logger=record.name[:200],
                    message=record.getMessage()[:10_000],
                    request_id=record.request_id[:64],
                    trace_id=record.trace_id,
                    span_id=record.span_id,
                    user_id=record.user_id,
                    process=_HOST[:64],
                    exception=exception,
                )
            )
        except Exception:
            self.handleError(record)
