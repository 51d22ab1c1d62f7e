"""In-process, bounded write buffers flushed in batches.

Request samples, the spans of finished requests, database log records and Prometheus counter
increments are collected in memory and written together with one bulk insert per table / one
upsert for all series, at most every
OBSERVABILITY_FLUSH_SECONDS (at the end of a request or task, on a scrape, on exit, and from a
daemon thread of the process so an idle process does not hold them). When a buffer is full the
oldest entries are dropped and counted, so memory stays bounded and the hot path never waits
for the database.
"""

import atexit
import contextlib
import logging
import os
import threading
import time
from collections import deque

from django.conf import settings
from django.db import connection, transaction

logger = logging.getLogger("observability.recording")

_state = threading.local()


def is_flushing() -> bool:
    """True while this thread writes a buffer (the log handler ignores records then)."""
    return getattr(_state, "flushing", False)


class _Buffer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.samples: deque = deque()
        self.logs: deque = deque()
        self.spans: deque = deque()
        self.counters: dict[tuple[str, str], float] = {}
        self.dropped = {"samples": 0, "logs": 0, "spans": 0}
        self.last_flush = time.monotonic()
        self.last_flush_error = ""
        self.last_flush_error_at = 0.0
        self.oldest_pending: float | None = None
        self.pid = os.getpid()

    def _limit(self) -> int:
        return getattr(settings, "OBSERVABILITY_BUFFER_MAX", 10_000)

    def _touch(self) -> None:
        if self.oldest_pending is None:
            self.oldest_pending = time.time()
            _start_flusher()

    def add_sample(self, sample) -> None:
        with self.lock:
            if len(self.samples) >= self._limit():
                self.samples.popleft()
                self.dropped["samples"] += 1
            self.samples.append(sample)
            self._touch()

    def add_log(self, record) -> None:
        with self.lock:
            if len(self.logs) >= self._limit():
                self.logs.popleft()
                self.dropped["logs"] += 1
            self.logs.append(record)
            self._touch()

    def add_spans(self, spans: list) -> None:
        with self.lock:
            overflow = len(self.spans) + len(spans) - self._limit()
            for _ in range(max(overflow, 0)):
                if not self.spans:
                    break
                self.spans.popleft()
                self.dropped["spans"] += 1
            self.spans.extend(spans)
            self._touch()

    def inc(self, name: str, labels: str, amount: float = 1.0) -> None:
        with self.lock:
            key = (name, labels)
            self.counters[key] = self.counters.get(key, 0.0) + amount
            self._touch()

    def pending(self) -> int:
        return len(self.samples) + len(self.logs) + len(self.spans) + len(self.counters)

    def due(self) -> bool:
        return self.overdue() or (len(self.logs) + len(self.samples) + len(self.spans) >= 500)

    def overdue(self) -> bool:
        interval = getattr(settings, "OBSERVABILITY_FLUSH_SECONDS", 0.0)
        return self.pending() > 0 and time.monotonic() - self.last_flush >= interval

    def drain(self):
        with self.lock:
            samples, self.samples = list(self.samples), deque()
            logs, self.logs = list(self.logs), deque()
            spans, self.spans = list(self.spans), deque()
            counters, self.counters = self.counters, {}
            self.oldest_pending = None
            self.last_flush = time.monotonic()
        return samples, logs, spans, counters


BUFFER = _Buffer()


_flusher: list[threading.Thread] = []


def _flush_periodically() -> None:
    while True:
        time.sleep(0.5)
        # By time only (a burst is flushed by the request or task that filled it).
        if getattr(settings, "OBSERVABILITY_FLUSH_SECONDS", 0.0) > 0 and BUFFER.overdue():
            flush()
            connection.close()  # this thread's own connection, idle until the next flush


def _start_flusher() -> None:
    """Start the process's flusher thread once (not when every request flushes anyway)."""
    if _flusher or getattr(settings, "OBSERVABILITY_FLUSH_SECONDS", 0.0) <= 0:
        return
    thread = threading.Thread(target=_flush_periodically, name="observability-flush", daemon=True)
    _flusher.append(thread)
    thread.start()


def _reset_after_fork() -> None:
    global BUFFER
    BUFFER = _Buffer()
    _flusher.clear()  # threads do not survive a fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _write_counters(counters: dict[tuple[str, str], float]) -> None:
    """Add every delta with one INSERT … ON CONFLICT DO UPDATE (SQLite ≥ 3.24, PostgreSQL),
    so a flush costs the same number of queries whatever series it touches."""
    from .models import MetricSeries

    qn = connection.ops.quote_name
    table = qn(MetricSeries._meta.db_table)
    rows = sorted(counters.items())
    values = ", ".join(["(%s, %s, %s)"] * len(rows))
    params = [p for (name, labels), amount in rows for p in (name, labels, amount)]
    sql = (
        f"INSERT INTO {table} ({qn('name')}, {qn('labels')}, {qn('value')}) VALUES {values} "  # noqa: S608
        f"ON CONFLICT ({qn('name')}, {qn('labels')}) DO UPDATE SET {qn('value')} = {table}.{qn('value')} + "
        f"excluded.{qn('value')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def flush(*, force: bool = False) -> int:
    """Write what this process buffered. Never raises; returns the number of items written."""
    buf = BUFFER
    if is_flushing() or (not force and not buf.due()) or buf.pending() == 0:
        return 0
    if connection.in_atomic_block and connection.needs_rollback:
        return 0
    from .models import LogRecord, RequestSample, Span

    _state.flushing = True
    samples, logs, spans, counters = buf.drain()
    written = len(samples) + len(logs) + len(spans) + len(counters)
    try:
        with transaction.atomic():
            if samples:
                RequestSample.objects.bulk_create(samples, batch_size=500)
            if logs:
                LogRecord.objects.bulk_create(logs, batch_size=500)
            if spans:
                Span.objects.bulk_create(spans, batch_size=500)
            if counters:
                _write_counters(counters)
        buf.last_flush_error = ""
        return written
    except Exception as exc:
        buf.last_flush_error = f"{type(exc).__name__}: {exc}"[:500]
        buf.last_flush_error_at = time.time()
        logger.warning("observability buffer flush failed; %s items dropped", written)
        return 0
    finally:
        _state.flushing = False


def flush_if_due() -> None:
    if BUFFER.due():
        flush()


def stats() -> dict:
    buf = BUFFER
    return {
        "pending": buf.pending(),
        "oldest_pending_age_seconds": round(time.time() - buf.oldest_pending, 3)
        if buf.oldest_pending
        else 0.0,
        "dropped_samples": buf.dropped["samples"],
        "dropped_logs": buf.dropped["logs"],
        "dropped_spans": buf.dropped["spans"],
        "last_flush_error": buf.last_flush_error,
    }


@atexit.register
def _flush_at_exit() -> None:  # pragma: no cover - process shutdown
    with contextlib.suppress(Exception):  # the interpreter is going away
        flush(force=True)
