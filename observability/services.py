"""The recording API every other app writes into, and the observability write services.

Recording is cheap and never breaks the caller: `event_record`, `span`, `span_start` /
`span_end` catch every failure, log it on `observability.recording` and return. Inside a
transaction they write in a savepoint, so a failed insert cannot poison the caller's work.

    from observability.services import event_record, span

    event_record(type="agent.deployed", actor=user, resource=agent, payload={"version": 3})
    with span("agent.run", kind="agent", attributes={"gen_ai.agent.id": str(agent.pk)}) as s:
        ...
        s.set_attributes({"gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 40})
"""

import dataclasses
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from django.db.models import Model, Q
from django.utils import timezone

from agentmesh.core.audit import audited
from agentmesh.core.exceptions import ConflictError, ServiceValidationError
from agentmesh.core.features import runtime_setting
from agentmesh.core.safe_http import safe_request
from agentmesh.core.signals import snapshot

from . import buffer, metrics, otlp
from .context import SpanBatch, TraceContext, activate, current, deactivate, new_span_id, new_trace_id
from .models import (
    OPEN_STATES,
    Alert,
    AlertRule,
    AlertState,
    Level,
    LogRecord,
    ObservabilityEvent,
    PipelineState,
    RequestSample,
    Span,
    SpanStatus,
)

logger = logging.getLogger("observability.recording")

EVENT_BATCH_MAX = 1000


def _jsonable(value: Any) -> Any:
    """Round-trip through Django's encoder: datetimes, decimals, UUIDs become strings."""
    import json

    return json.loads(json.dumps(value, cls=DjangoJSONEncoder, default=str))


@contextmanager
def _guarded(what: str):
    """Run a recording write in a savepoint; log and swallow any failure."""
    try:
        if connection.in_atomic_block:
            if connection.needs_rollback:
                yield False
                return
            with transaction.atomic():
                yield True
        else:
            yield True
    except Exception:
        logger.warning("recording %s failed; the operation continues", what, exc_info=True)


def _actor_id(actor) -> int | None:
    if actor is None:
        return None
    if isinstance(actor, int):
        return actor
    return actor.pk if getattr(actor, "is_authenticated", False) else None


def resource_label(obj: Model) -> tuple[str, str]:
    pk = obj.pk if obj.pk is not None else getattr(obj, "_audit_pk", None)
    return obj._meta.label_lower, str(pk)


# --- events -------------------------------------------------------------------------------
def _write_event(event: ObservabilityEvent) -> None:
    event.save(force_insert=True)


def event_record(
    *,
    type: str,
    level: str = Level.INFO,
    source: str = "",
    actor=None,
    resource: Model | None = None,
    resource_type: str = "",
    resource_id: str = "",
    message: str = "",
    payload: dict | None = None,
    timestamp: datetime | None = None,
) -> ObservabilityEvent | None:
    """Record one event in the current trace context. Returns None if recording failed."""
    event = None
    with _guarded(f"event {type}") as ok:
        if not ok:
            return None
        ctx = current()
        if resource is not None:
            resource_type, resource_id = resource_label(resource)
        event = ObservabilityEvent(
            timestamp=timestamp or timezone.now(),
            type=type[:100],
            level=level,
            source=source[:50],
            actor_id=_actor_id(actor),
            resource_type=resource_type[:100],
            resource_id=str(resource_id)[:64],
            message=message[:500],
            trace_id=ctx.trace_id if ctx else "",
            span_id=ctx.span_id if ctx else "",
            request_id=ctx.request_id if ctx else "",
            payload=payload or {},
        )
        _write_event(event)
        metrics.inc("agentmesh_events_total", level=level)
        return event
    return None


def events_ingest(*, items: list[dict], actor) -> list[uuid.UUID]:
    """Insert already validated events (POST /events); returns their ids in order.

    The actor is always the requesting user. Rows are built as plain tuples (no model
    instances on this hot path) and written with COPY on PostgreSQL, one multi-row INSERT
    elsewhere.
    """
    import json

    ctx = current()
    now = timezone.now()
    actor_id = _actor_id(actor)
    request_id = ctx.request_id if ctx else ""
    dumps = json.dumps
    rows = [
        (
            uuid.uuid4(),
            item.get("timestamp") or now,
            item["type"],
            item.get("level", Level.INFO),
            item.get("source", ""),
            actor_id,
            item.get("resource_type", ""),
            item.get("resource_id", ""),
            item.get("trace_id", ""),
            item.get("span_id", ""),
            request_id,
            item.get("message", ""),
            item.get("payload") or {},
        )
        for item in items
    ]
    if connection.vendor == "postgresql":
        table = ObservabilityEvent._meta.db_table
        sql = f"COPY {table} ({', '.join(EVENT_COLUMNS)}) FROM STDIN"  # noqa: S608 - constant names
        with transaction.atomic(), connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row((*row[:-1], dumps(row[-1], cls=DjangoJSONEncoder)))
    else:
        ObservabilityEvent.objects.bulk_create(
            [ObservabilityEvent(**dict(zip(EVENT_COLUMNS, row, strict=True))) for row in rows],
            batch_size=EVENT_BATCH_MAX,
        )
    levels: dict[str, int] = {}
    for row in rows:
        levels[row[3]] = levels.get(row[3], 0) + 1
    for level, count in levels.items():
        metrics.inc("agentmesh_events_total", count, level=level)
    return [row[0] for row in rows]


EVENT_COLUMNS = (
    "id",
    "timestamp",
    "type",
    "level",
    "source",
    "actor_id",
    "resource_type",
    "resource_id",
    "trace_id",
    "span_id",
    "request_id",
    "message",
    "payload",
)


def event_rows(events: Iterable[ObservabilityEvent]) -> Iterator[tuple]:
    """COPY rows of event instances (the benchmark's raw baseline uses the same encoding)."""
    import json

    for e in events:
        yield (
            e.id,
            e.timestamp,
            e.type,
            e.level,
            e.source,
            e.actor_id,
            e.resource_type,
            e.resource_id,
            e.trace_id,
            e.span_id,
            e.request_id,
            e.message,
            json.dumps(e.payload, cls=DjangoJSONEncoder),
        )


# --- spans --------------------------------------------------------------------------------
GENAI_MODEL_KEYS = ("gen_ai.request.model", "gen_ai.response.model")


def _int(value) -> int:
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError):
        return 0


def _decimal(value) -> Decimal:
    try:
        return Decimal(str(value or 0)).quantize(Decimal("0.000001"))
    except (InvalidOperation, ValueError):
        return Decimal(0)


class SpanHandle:
    """A span being recorded. Set attributes while it runs; `span_end` (or the context
    manager) writes it."""

    def __init__(
        self,
        *,
        name: str,
        kind: str,
        trace_id: str,
        span_id: str,
        parent_span_id: str,
        attributes: dict | None,
        user_id: int | None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.attributes: dict = dict(attributes or {})
        self.user_id = user_id
        self.start_time = timezone.now()
        self._t0 = time.perf_counter()
        self.status = SpanStatus.UNSET
        self.error = ""
        self.persisted = False

    def set_attribute(self, key: str, value) -> None:
        self.attributes[key] = value

    def set_attributes(self, values: dict) -> None:
        self.attributes.update(values)

    def record_error(self, exc: BaseException | str) -> None:
        self.status = SpanStatus.ERROR
        self.error = (exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}")[:2000]

    def _row_values(self) -> dict:
        attrs = _jsonable(self.attributes)
        model = next((str(attrs[k]) for k in GENAI_MODEL_KEYS if attrs.get(k)), "")
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "name": self.name[:200],
            "kind": self.kind,
            "start_time": self.start_time,
            "status": self.status,
            "error": self.error,
            "attributes": attrs,
            "user_id": self.user_id,
            "model": model[:100],
            "agent_id": str(attrs.get("gen_ai.agent.id", ""))[:64],
            "input_tokens": _int(attrs.get("gen_ai.usage.input_tokens")),
            "output_tokens": _int(attrs.get("gen_ai.usage.output_tokens")),
            "cost_usd": _decimal(attrs.get("agentmesh.cost_usd")),
        }


def _parent_from_context() -> tuple[str, str, int | None]:
    ctx = current()
    if ctx is None:
        return new_trace_id(), "", None
    ctx.root_referenced[0] = True
    return ctx.trace_id, ctx.span_id, ctx.user_id


def span_start(
    name: str,
    *,
    kind: str = "internal",
    attributes: dict | None = None,
    actor=None,
    trace_id: str | None = None,
    parent_span_id: str | None = None,
    persist: bool = True,
) -> SpanHandle:
    """Open a span (a child of the current context unless trace/parent ids are given).

    With `persist=True` the row is written now with status `unset` (a long run shows as
    running); `span_end` completes it. Never raises.
    """
    ctx_trace, ctx_parent, ctx_user = _parent_from_context()
    handle = SpanHandle(
        name=name,
        kind=kind,
        trace_id=trace_id or ctx_trace,
        span_id=new_span_id(),
        parent_span_id=ctx_parent if parent_span_id is None else parent_span_id,
        attributes=attributes,
        user_id=_actor_id(actor) if actor is not None else ctx_user,
    )
    if persist:
        with _guarded(f"span {name}") as ok:
            if ok:
                Span.objects.create(**handle._row_values())
                handle.persisted = True
    return handle


def span_end(
    handle: SpanHandle, *, status: str | None = None, error: str = "", attributes: dict | None = None
) -> None:
    """Finish a span: end time, duration, status, attributes. Never raises."""
    if attributes:
        handle.set_attributes(attributes)
    if error:
        handle.record_error(error)
    if status:
        handle.status = status
    elif handle.status == SpanStatus.UNSET:
        handle.status = SpanStatus.OK
    duration_ms = (time.perf_counter() - handle._t0) * 1000
    values = handle._row_values()
    values.update(end_time=handle.start_time + timedelta(milliseconds=duration_ms), duration_ms=duration_ms)
    batch = ctx.span_batch if not handle.persisted and (ctx := current()) is not None else None
    if batch is not None and batch.add(values):
        handle.persisted = True  # written with the request's root span
    else:
        with _guarded(f"span {handle.name}") as ok:
            if ok:
                if handle.persisted:
                    Span.objects.filter(span_id=handle.span_id).update(**values)
                else:
                    Span.objects.create(**values)
                    handle.persisted = True
    otlp.export_span(values)  # one settings check unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    try:
        metrics.record_run(
            kind=handle.kind,
            status=handle.status,
            seconds=duration_ms / 1000,
            model=values["model"],
            input_tokens=values["input_tokens"],
            output_tokens=values["output_tokens"],
            cost=values["cost_usd"],
        )
    except Exception:
        logger.warning("recording metrics of span %s failed", handle.name, exc_info=True)


@contextmanager
def use_span(handle: SpanHandle) -> Iterator[SpanHandle]:
    """Make `handle` the current span, so spans, events, logs and tasks inside are its children."""
    outer = current()
    ctx = TraceContext(
        trace_id=handle.trace_id,
        span_id=handle.span_id,
        request_id=outer.request_id if outer else "",
        user_id=handle.user_id,
        span_batch=outer.span_batch if outer else None,
    )
    token = activate(ctx)
    try:
        yield handle
    finally:
        deactivate(token)


@contextmanager
def buffered_spans() -> Iterator[None]:
    """Spans that end inside the block go to the process write buffer (one bulk insert per
    flush, like a request's spans) instead of an INSERT each. Inside a request, or a worker's
    task, they already join its batch."""
    outer = current()
    if outer is not None and outer.span_batch is not None:
        yield
        return
    batch = SpanBatch()
    ctx = TraceContext(trace_id=new_trace_id(), span_batch=batch)
    if outer is not None:
        ctx = dataclasses.replace(outer, span_batch=batch)
    token = activate(ctx)
    try:
        yield
    finally:
        deactivate(token)
        hand_spans_to_buffer(batch)


def hand_spans_to_buffer(batch: SpanBatch) -> None:
    """Hand the finished spans of `batch` to the process write buffer."""
    rows = batch.close()
    if rows:
        buffer.BUFFER.add_spans([Span(**row) for row in rows])


@contextmanager
def span(
    name: str, *, kind: str = "internal", attributes: dict | None = None, actor=None
) -> Iterator[SpanHandle]:
    """Record the block as a span (one insert when it ends); an exception marks it `error`
    and propagates unchanged."""
    handle = span_start(name, kind=kind, attributes=attributes, actor=actor, persist=False)
    with use_span(handle):
        try:
            yield handle
        except BaseException as exc:
            handle.record_error(exc)
            raise
        finally:
            span_end(handle)


# --- audit --------------------------------------------------------------------------------
def audit_record(
    *,
    actor,
    action: str,
    instance: Model | type[Model],
    changes: dict,
    channel: str = "system",
    details: dict | None = None,
) -> ObservabilityEvent | None:
    """An `audit.<action>` event: who (actor), through what (channel), the resource, the
    changed field names and their new values (sensitive ones masked), and `details`."""
    from agentmesh.core.signals import mask_sensitive

    bulk = isinstance(instance, type)
    model = instance if bulk else type(instance)
    safe = mask_sensitive(model, changes)
    payload = {
        "action": action,
        "channel": channel,
        "changed_fields": sorted(safe),
        "changes": _jsonable(safe),
        **_jsonable(mask_sensitive(model, details or {})),
    }
    if bulk:
        resource_type, resource_id = model._meta.label_lower, ""
        message = f"{action} {model._meta.verbose_name_plural}"
    else:
        resource_type, resource_id = resource_label(instance)
        payload["repr"] = str(instance)[:200]
        message = f"{action} {model._meta.verbose_name} {resource_id}"
    return event_record(
        type=f"audit.{action}",
        source=model._meta.app_label,
        actor=actor,
        resource_type=resource_type,
        resource_id=resource_id,
        message=message,
        payload=payload,
    )


# --- logs ---------------------------------------------------------------------------------
def log_records_write(records: list[LogRecord]) -> None:
    LogRecord.objects.bulk_create(records, batch_size=500)


# --- alerts -------------------------------------------------------------------------------
def alert_create_manual(
    *, owner, title: str, message: str = "", severity: str = "warning", dedup_key: str = "", value=None
) -> tuple[Alert, bool]:
    """Raise an alert by hand (POST /alerts). With a `dedup_key`, an open alert with the same
    key is reused (its `occurrences` grows) instead of a second one. Returns (alert, created)."""
    now = timezone.now()
    if dedup_key:
        with transaction.atomic():  # select_for_update needs one (PostgreSQL refuses it outside)
            existing = (
                Alert.objects.select_for_update()
                .filter(owner=owner, rule__isnull=True, dedup_key=dedup_key, state__in=OPEN_STATES)
                .first()
            )
            if existing:
                existing.occurrences += 1
                existing.last_seen_at = now
                existing.value = value
                existing.save(update_fields=["occurrences", "last_seen_at", "value", "updated_at"])
                return existing, False
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                owner=owner,
                title=title,
                message=message,
                severity=severity,
                dedup_key=dedup_key,
                value=value,
                fired_at=now,
                last_seen_at=now,
            )
    except IntegrityError:  # a concurrent request raised it first
        return alert_create_manual(
            owner=owner, title=title, message=message, severity=severity, dedup_key=dedup_key, value=value
        )
    audited("create", alert, actor=owner)
    event_record(
        type="alert.fired",
        level=_level_of(severity),
        actor=owner,
        resource=alert,
        source="observability",
        message=title,
    )
    return alert, True


def _level_of(severity: str) -> str:
    return {"info": Level.INFO, "warning": Level.WARNING, "critical": Level.CRITICAL}.get(
        severity, Level.WARNING
    )


@transaction.atomic
def alert_acknowledge(*, alert: Alert, user) -> Alert:
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.state == AlertState.RESOLVED:
        raise ConflictError("A resolved alert cannot be acknowledged.")
    if alert.state == AlertState.FIRING:
        before = snapshot(alert)
        alert.state = AlertState.ACKNOWLEDGED
        alert.acknowledged_at = timezone.now()
        alert.acknowledged_by = user
        alert.save(update_fields=["state", "acknowledged_at", "acknowledged_by", "updated_at"])
        audited("acknowledge", alert, before=before, actor=user)
        event_record(type="alert.acknowledged", actor=user, resource=alert, source="observability")
    return alert


@transaction.atomic
def alert_resolve(*, alert: Alert, user=None) -> Alert:
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.state != AlertState.RESOLVED:
        before = snapshot(alert)
        alert.state = AlertState.RESOLVED
        alert.resolved_at = timezone.now()
        alert.resolved_by = user
        alert.save(update_fields=["state", "resolved_at", "resolved_by", "updated_at"])
        audited("resolve", alert, before=before, actor=user)
        event_record(type="alert.resolved", actor=user, resource=alert, source="observability")
        if alert.rule_id:
            _notify_on_commit(alert, "resolved")
    return alert


def _notify_on_commit(alert: Alert, transition: str) -> None:
    from agentmesh.core.tasks import enqueue_on_commit

    from .tasks import deliver_alert_notifications

    if alert.rule_id and alert.rule.channels:
        enqueue_on_commit(deliver_alert_notifications, str(alert.pk), transition)


_COMPARE = {
    "gt": lambda v, t: v > t,
    "gte": lambda v, t: v >= t,
    "lt": lambda v, t: v < t,
    "lte": lambda v, t: v <= t,
    "eq": lambda v, t: v == t,
}


def alert_rule_evaluate(*, rule: AlertRule, now: datetime | None = None) -> Alert | None:
    """Evaluate one rule; fire (once), keep, or auto-resolve its alert. Returns the open alert."""
    from .selectors import alert_metric_value

    now = now or timezone.now()
    value = alert_metric_value(rule=rule, start=now - timedelta(minutes=rule.window_minutes), end=now)
    breached = value is not None and _COMPARE[rule.comparison](value, rule.threshold)
    with transaction.atomic():
        AlertRule.objects.filter(pk=rule.pk).update(last_evaluated_at=now, last_value=value)
        open_alert = (
            Alert.objects.select_for_update()
            .filter(rule=rule, state__in=OPEN_STATES)
            .select_related("rule")
            .first()
        )
        if breached and open_alert is None:
            try:
                with transaction.atomic():
                    open_alert = Alert.objects.create(
                        owner_id=rule.owner_id,
                        rule=rule,
                        title=f"{rule.name}: {rule.metric} {rule.aggregation} "
                        f"{value:g} {rule.get_comparison_display()} {rule.threshold:g}",
                        message=rule.description,
                        severity=rule.severity,
                        value=value,
                        fired_at=now,
                        last_seen_at=now,
                    )
            except IntegrityError:  # another evaluator fired it
                return Alert.objects.filter(rule=rule, state__in=OPEN_STATES).first()
            event_record(
                type="alert.fired",
                level=_level_of(rule.severity),
                actor=rule.owner_id,
                resource=open_alert,
                source="observability",
                message=open_alert.title,
                payload={"rule_id": str(rule.pk), "value": value},
            )
            _notify_on_commit(open_alert, "fired")
        elif breached:
            Alert.objects.filter(pk=open_alert.pk).update(last_seen_at=now, value=value)
        elif open_alert is not None:
            alert_resolve(alert=open_alert, user=None)
            return None
    return open_alert


def alert_rules_evaluate(*, now: datetime | None = None) -> dict:
    """Evaluate every enabled rule (the beat task). One failing rule does not stop the others."""
    now = now or timezone.now()
    firing = failed = 0
    rules = AlertRule.objects.filter(enabled=True).select_related("owner")
    for rule in rules:
        try:
            if alert_rule_evaluate(rule=rule, now=now):
                firing += 1
        except Exception:
            failed += 1
            logger.exception("evaluating alert rule %s failed", rule.pk)
    summary = {"evaluated_at": now.isoformat(), "rules": len(rules), "firing": firing, "failed": failed}
    PipelineState.objects.update_or_create(key="alert_evaluation", defaults={"value": summary})
    return summary


def alert_notify(*, alert: Alert, transition: str) -> list[dict]:
    """Send the alert to its rule's channels (log, webhook via the safe HTTP client)."""
    results = []
    channels = alert.rule.channels if alert.rule_id else []
    body = {
        "alert_id": str(alert.pk),
        "rule_id": str(alert.rule_id) if alert.rule_id else None,
        "transition": transition,
        "state": alert.state,
        "title": alert.title,
        "severity": alert.severity,
        "value": alert.value,
        "fired_at": alert.fired_at.isoformat(),
    }
    for channel in channels:
        kind = channel.get("type")
        if kind == "log":
            logging.getLogger("observability.alerts").warning(
                "alert %s: %s", transition, alert.title, extra={"alert": body}
            )
            results.append({"type": "log", "ok": True})
        elif kind == "webhook":
            results.append(_deliver_webhook(channel.get("url", ""), body))
    event_record(
        type="alert.notification",
        level=Level.INFO if all(r["ok"] for r in results) else Level.WARNING,
        actor=alert.owner_id,
        resource=alert,
        source="observability",
        payload={"transition": transition, "results": results},
    )
    return results


def _deliver_webhook(url: str, body: dict) -> dict:
    try:
        response = safe_request("POST", url, json=body, timeout=settings.OBSERVABILITY_WEBHOOK_TIMEOUT)
        return {"type": "webhook", "ok": response.is_success, "status": response.status_code}
    except Exception as exc:  # SafeHTTPError (refused, timeout, too large) or transport error
        return {"type": "webhook", "ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


# --- retention ----------------------------------------------------------------------------
def _prune(queryset, batch_size: int) -> int:
    total = 0
    model = queryset.model
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:batch_size])
        if not ids:
            return total
        model.objects.filter(pk__in=ids).delete()
        total += len(ids)
        if len(ids) < batch_size:
            return total


def retention_prune(*, now: datetime | None = None, batch_size: int | None = None) -> dict:
    """Delete events, spans, logs and request samples older than their retention, in batches.

    Rows of a trace with a span that is still running (no end time) are kept.
    """
    now = now or timezone.now()
    batch_size = batch_size or settings.OBSERVABILITY_PRUNE_BATCH_SIZE
    days = {  # runtime settings (GET/PUT /system/config); defaults OBSERVABILITY_RETENTION_DAYS
        "events": runtime_setting("OBSERVABILITY_RETENTION_EVENTS_DAYS"),
        "spans": runtime_setting("OBSERVABILITY_RETENTION_SPANS_DAYS"),
        "logs": runtime_setting("OBSERVABILITY_RETENTION_LOGS_DAYS"),
        "request_samples": runtime_setting("OBSERVABILITY_RETENTION_REQUESTS_DAYS"),
        "alerts": runtime_setting("OBSERVABILITY_RETENTION_ALERTS_DAYS"),
    }
    active = Span.objects.filter(end_time__isnull=True).values("trace_id")
    not_active = ~Q(trace_id__in=active)
    summary = {
        "events": _prune(
            ObservabilityEvent.objects.filter(
                Q(timestamp__lt=now - timedelta(days=days["events"])), not_active | Q(trace_id="")
            ),
            batch_size,
        ),
        "spans": _prune(
            Span.objects.filter(
                start_time__lt=now - timedelta(days=days["spans"]), end_time__isnull=False
            ).filter(not_active),
            batch_size,
        ),
        "logs": _prune(
            LogRecord.objects.filter(
                Q(timestamp__lt=now - timedelta(days=days["logs"])), not_active | Q(trace_id="")
            ),
            batch_size,
        ),
        "request_samples": _prune(
            RequestSample.objects.filter(timestamp__lt=now - timedelta(days=days["request_samples"])),
            batch_size,
        ),
        "resolved_alerts": _prune(
            Alert.objects.filter(
                state=AlertState.RESOLVED, resolved_at__lt=now - timedelta(days=days["alerts"])
            ),
            batch_size,
        ),
    }
    PipelineState.objects.update_or_create(
        key="retention", defaults={"value": {"at": now.isoformat(), **summary}}
    )
    return summary


def require_batch_size(items: list) -> None:
    if len(items) > EVENT_BATCH_MAX:
        raise ServiceValidationError(f"At most {EVENT_BATCH_MAX} events per request.", field="events")
