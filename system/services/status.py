"""Status area writes: beat's tick, the filesystem broker's housekeeping, and the built-in
system checks, which fire (once, while their condition holds) and resolve observability Alerts.

A system check's alert is an observability `Alert` without a rule, with `dedup_key`
`system:<check>`, owned by SYSTEM_ALERTS_OWNER (default: the first active admin), so the alert
machinery applies as for any other alert: the `alert.fired` event (and through it the owner's
webhooks), acknowledge and resolve through `/observability/alerts`. A check that clears resolves
its alert; one an operator resolves while its condition still holds fires again at the next
evaluation.
"""

import logging
import os
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from agentmesh.core.audit import audit_context, audited
from observability.models import OPEN_STATES, Alert, Level, Severity
from observability.services import alert_resolve, event_record

from ..models import BeatTick, CheckState, SystemCheck

logger = logging.getLogger(__name__)


# --- beat ------------------------------------------------------------------------------------
def beat_tick_sent(*, at: datetime | None = None) -> None:
    """Beat published its tick task (called in the publishing process, so a silent beat shows
    even when no worker runs the task)."""
    at = at or timezone.now()
    if not BeatTick.objects.filter(key="beat").update(sent_at=at):
        try:
            with transaction.atomic():
                BeatTick.objects.create(key="beat", sent_at=at)
        except IntegrityError:  # created concurrently
            BeatTick.objects.filter(key="beat").update(sent_at=at)


@transaction.atomic
def beat_tick_record(*, sent_at: datetime | None, worker: str = "") -> BeatTick:
    """A worker ran beat's tick task that was published at `sent_at`."""
    now = timezone.now()
    tick, _ = BeatTick.objects.select_for_update().get_or_create(key="beat")
    tick.ran_at = now
    tick.ticks += 1
    tick.worker = worker[:255]
    tick.lag_ms = round((now - sent_at).total_seconds() * 1000, 2) if sent_at else None
    if sent_at and (tick.sent_at is None or sent_at > tick.sent_at):
        tick.sent_at = sent_at
    tick.save()
    return tick


def broker_housekeeping(*, older_than_seconds: float = 60.0) -> int:
    """The filesystem broker keeps a dead worker's broadcast queue bound, so every broadcast
    (status, inspect, restart) leaves a message there that nobody reads; delete broadcast
    messages and replies (`*.pidbox.msg`) older than `older_than_seconds`. Other brokers expire
    them themselves. Returns how many files were deleted."""
    from ..selectors.status import broker_transport

    folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("data_folder_in")
    if broker_transport() != "filesystem" or not folder or not os.path.isdir(folder):
        return 0
    cutoff = time.time() - older_than_seconds
    deleted = 0
    for entry in os.scandir(folder):
        if not entry.name.endswith(".pidbox.msg"):
            continue
        try:
            if entry.stat().st_mtime < cutoff:
                os.remove(entry.path)
                deleted += 1
        except OSError:  # consumed or removed meanwhile
            continue
    return deleted


# --- checks ----------------------------------------------------------------------------------
@dataclass
class CheckResult:
    state: str
    value: float | None = None
    message: str = ""


@dataclass
class Check:
    key: str
    title: str
    severity: str
    threshold: Callable[[], float]
    evaluate: Callable[["CheckContext"], CheckResult]


@dataclass
class CheckContext:
    now: datetime
    status: dict = field(default_factory=dict)
    running_on: str = ""  # the worker evaluating the checks (the beat task), if any


def _no_live_worker(ctx: CheckContext) -> CheckResult:
    workers = ctx.status["components"]["workers"]
    if workers["status"] == "up":
        return CheckResult(CheckState.OK, workers.get("count"), f"{workers.get('count')} worker(s) alive")
    if workers["status"] == "down" and ctx.running_on:  # a solo pool cannot answer while busy
        return CheckResult(CheckState.OK, 1, f"{ctx.running_on} runs this check (no broadcast reply)")
    if workers["status"] == "down":
        return CheckResult(CheckState.FIRING, 0, "No Celery worker answers: background work does not run.")
    return CheckResult(CheckState.UNKNOWN, None, workers.get("error", "the workers could not be asked"))


def _queue_backlog(ctx: CheckContext) -> CheckResult:
    queues = ctx.status["components"]["queues"].get("queues")
    if queues is None:
        return CheckResult(CheckState.UNKNOWN, None, "the queue depths could not be read")
    deepest = max(queues, key=lambda q: q["depth"], default={"name": "", "depth": 0})
    limit = settings.SYSTEM_ALERT_QUEUE_BACKLOG
    if deepest["depth"] > limit:
        return CheckResult(
            CheckState.FIRING, deepest["depth"], f"Queue {deepest['name']} holds {deepest['depth']} messages."
        )
    return CheckResult(CheckState.OK, deepest["depth"], "")


def _beat_silent(ctx: CheckContext) -> CheckResult:
    beat = ctx.status["components"]["beat"]
    if beat["status"] == "unknown":
        return CheckResult(CheckState.UNKNOWN, None, beat.get("error", "the database is unreachable"))
    age = beat.get("age_seconds")
    if age is None:
        return CheckResult(CheckState.FIRING, None, "Beat has never ticked: is the scheduler running?")
    if age > settings.SYSTEM_BEAT_SILENT_SECONDS:
        return CheckResult(CheckState.FIRING, age, f"Beat's last tick was {age:.0f} s ago.")
    return CheckResult(CheckState.OK, age, "")


def database_round_trip_ms(samples: int = 3) -> float:
    """The median of a few `SELECT 1` round trips, in milliseconds."""
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def _database_slow(ctx: CheckContext) -> CheckResult:
    ms = database_round_trip_ms()
    if ms > settings.SYSTEM_ALERT_DATABASE_SLOW_MS:
        return CheckResult(CheckState.FIRING, ms, f"A database round trip takes {ms:.0f} ms.")
    return CheckResult(CheckState.OK, ms, "")


def disk_free_percent() -> list[dict]:
    """Free space of each of SYSTEM_ALERT_DISK_PATHS (the nearest existing parent of each)."""
    out = []
    for raw in settings.SYSTEM_ALERT_DISK_PATHS:
        path = Path(raw)
        while not path.exists() and path != path.parent:
            path = path.parent
        usage = shutil.disk_usage(path)
        out.append({"path": str(raw), "free_percent": round(usage.free * 100 / usage.total, 2)})
    return out


def _disk_low(ctx: CheckContext) -> CheckResult:
    disks = disk_free_percent()
    if not disks:
        return CheckResult(CheckState.OK, None, "no path to watch")
    lowest = min(disks, key=lambda d: d["free_percent"])
    if lowest["free_percent"] < settings.SYSTEM_ALERT_DISK_FREE_PERCENT:
        return CheckResult(
            CheckState.FIRING,
            lowest["free_percent"],
            f"Only {lowest['free_percent']:.1f} % free on the disk of {lowest['path']}.",
        )
    return CheckResult(CheckState.OK, lowest["free_percent"], "")


def _error_rate_high(ctx: CheckContext) -> CheckResult:
    from observability.selectors import request_error_rate

    window = settings.SYSTEM_ALERT_ERROR_RATE_WINDOW_MINUTES
    rate = request_error_rate(start=ctx.now - timedelta(minutes=window), end=ctx.now)
    if (
        rate["total"] >= settings.SYSTEM_ALERT_ERROR_RATE_MIN_REQUESTS
        and rate["rate"] > settings.SYSTEM_ALERT_ERROR_RATE
    ):
        return CheckResult(
            CheckState.FIRING,
            round(rate["rate"], 4),
            f"{rate['errors']} of {rate['total']} API requests in the last {window} min answered 5xx.",
        )
    return CheckResult(CheckState.OK, round(rate["rate"], 4), f"{rate['errors']}/{rate['total']} requests")


CHECKS: dict[str, Check] = {
    c.key: c
    for c in (
        Check("no_live_worker", "no live worker", Severity.CRITICAL, lambda: 1, _no_live_worker),
        Check(
            "queue_backlog",
            "queue backlog",
            Severity.WARNING,
            lambda: settings.SYSTEM_ALERT_QUEUE_BACKLOG,
            _queue_backlog,
        ),
        Check(
            "beat_silent",
            "beat silent",
            Severity.CRITICAL,
            lambda: settings.SYSTEM_BEAT_SILENT_SECONDS,
            _beat_silent,
        ),
        Check(
            "database_slow",
            "database slow",
            Severity.WARNING,
            lambda: settings.SYSTEM_ALERT_DATABASE_SLOW_MS,
            _database_slow,
        ),
        Check(
            "disk_low",
            "disk low",
            Severity.CRITICAL,
            lambda: settings.SYSTEM_ALERT_DISK_FREE_PERCENT,
            _disk_low,
        ),
        Check(
            "error_rate_high",
            "error rate high",
            Severity.WARNING,
            lambda: settings.SYSTEM_ALERT_ERROR_RATE,
            _error_rate_high,
        ),
    )
}


def dedup_key_of(check_key: str) -> str:
    return f"system:{check_key}"


def system_alerts_owner():
    """Who system alerts belong to: SYSTEM_ALERTS_OWNER, else the first active admin; or None."""
    users = get_user_model().objects.filter(is_active=True)
    if settings.SYSTEM_ALERTS_OWNER:
        return users.filter(username=settings.SYSTEM_ALERTS_OWNER).first()
    return users.filter(Q(is_superuser=True) | Q(role="admin")).order_by("date_joined", "pk").first()


_LEVELS = {Severity.INFO: Level.INFO, Severity.WARNING: Level.WARNING, Severity.CRITICAL: Level.CRITICAL}


def _apply(check: Check, result: CheckResult, *, owner, now: datetime) -> SystemCheck:
    """Store the result; fire the check's alert once while it holds, resolve it when it clears."""
    threshold = check.threshold()
    with transaction.atomic():
        row, _ = SystemCheck.objects.select_for_update().get_or_create(key=check.key)
        open_alert = (
            Alert.objects.select_for_update()
            .filter(rule__isnull=True, dedup_key=dedup_key_of(check.key), state__in=OPEN_STATES)
            .order_by("fired_at")
            .first()
        )
        if result.state == CheckState.FIRING and open_alert is None and owner is not None:
            title = f"System: {check.title}"
            open_alert = Alert.objects.create(
                owner=owner,
                title=title,
                message=result.message,
                severity=check.severity,
                dedup_key=dedup_key_of(check.key),
                value=result.value,
                fired_at=now,
                last_seen_at=now,
            )
            audited("create", open_alert)
            event_record(
                type="alert.fired",
                level=_LEVELS.get(check.severity, Level.WARNING),
                actor=owner,
                resource=open_alert,
                source="system",
                message=title,
                payload={"check": check.key, "value": result.value, "threshold": threshold},
            )
        elif result.state == CheckState.FIRING and open_alert is not None:
            Alert.objects.filter(pk=open_alert.pk).update(last_seen_at=now, value=result.value)
        elif result.state == CheckState.OK and open_alert is not None:
            alert_resolve(alert=open_alert, user=None)
            open_alert = None
        row.state = result.state
        row.value = result.value
        row.threshold = threshold
        row.message = result.message[:500]
        row.checked_at = now
        row.alert = open_alert
        row.save()
    return row


def system_checks_evaluate(
    *, now: datetime | None = None, keys: list[str] | None = None, running_on: str = ""
) -> dict:
    """Evaluate the built-in checks (all, or `keys`) on a fresh status measurement; one that
    fails is `unknown` and leaves its alert as it is. `running_on`: the worker evaluating them
    (alive, whether or not it answered the broadcast). Returns {check: state}."""
    from ..selectors.status import system_status

    now = now or timezone.now()
    owner = system_alerts_owner()
    if owner is None:
        logger.warning("system checks: no active admin to own system alerts (SYSTEM_ALERTS_OWNER)")
    ctx = CheckContext(now=now, status=system_status(detail=True, max_age=0), running_on=running_on)
    states = {}
    with audit_context(channel="system"):
        for key, check in CHECKS.items():
            if keys is not None and key not in keys:
                continue
            try:
                result = check.evaluate(ctx)
            except Exception as exc:
                logger.exception("system check %s failed", key)
                result = CheckResult(CheckState.UNKNOWN, None, f"{type(exc).__name__}"[:500])
            try:
                states[key] = _apply(check, result, owner=owner, now=now).state
            except IntegrityError:  # another evaluator created the row or the alert meanwhile
                states[key] = _apply(check, result, owner=owner, now=now).state
    return states


def system_checks_evaluate_if_stale(*, now: datetime | None = None) -> bool:
    """Evaluate the checks when the last evaluation is older than twice
    SYSTEM_CHECKS_INTERVAL_SECONDS (a dead worker or beat cannot run the periodic task that
    would notice it). One caller at a time evaluates; returns whether this one did."""
    now = now or timezone.now()
    last = SystemCheck.objects.aggregate(last=Max("checked_at"))["last"]
    if last is not None and (now - last).total_seconds() < 2 * settings.SYSTEM_CHECKS_INTERVAL_SECONDS:
        return False
    lock = "system:checks:evaluating"
    try:
        if not cache.add(lock, 1, timeout=60):
            return False
    except Exception:  # the cache is down: evaluate anyway (it is one of the things checked)
        logger.warning("system checks: the cache lock is unavailable", exc_info=True)
        lock = None
    try:
        system_checks_evaluate(now=now)
    finally:
        if lock:
            try:
                cache.delete(lock)
            except Exception:
                logger.debug("system checks: releasing the cache lock failed", exc_info=True)
    return True
