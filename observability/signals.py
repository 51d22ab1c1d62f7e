"""Signal receivers connected in ObservabilityConfig.ready(): audit trail, logins, and the
trace context across Celery tasks."""

import logging

from celery import signals as celery_signals
from django.contrib.auth.signals import user_logged_in, user_login_failed

from agentmesh.core import audit
from agentmesh.core.signals import write_audited

from . import buffer, services
from .context import (
    CELERY_HEADER,
    SpanBatch,
    TraceContext,
    activate,
    current,
    deactivate,
    headers_for_task,
    new_trace_id,
)
from .models import Level, SpanKind, SpanStatus

logger = logging.getLogger("observability.recording")


def on_write_audited(sender, *, actor, channel, action, instance, changes, details=None, **kwargs) -> None:
    services.audit_record(
        actor=actor, channel=channel, action=action, instance=instance, changes=changes, details=details
    )


def remember_pk(sender, instance, **kwargs) -> None:
    """Django clears the pk of a deleted instance; keep it for the `audit.delete` event."""
    instance._audit_pk = instance.pk


def on_login(sender, request=None, user=None, **kwargs) -> None:
    services.event_record(
        type="auth.login",
        source="accounts",
        actor=user,
        resource=user,
        message=f"{user.get_username()} logged in",
    )


def on_login_failed(sender, credentials=None, request=None, **kwargs) -> None:
    credentials = credentials or {}
    username = str(credentials.get("username") or credentials.get("email") or "")[:150]
    services.event_record(
        type="auth.login_failed",
        level=Level.WARNING,
        source="accounts",
        message=f"failed login for {username!r}",
        payload={"username": username},
    )


# --- Celery: the trace travels in a message header ---------------------------------------
_task_state: dict[str, tuple] = {}
_audit_tokens: dict[str, object] = {}


def on_before_task_publish(sender=None, headers=None, **kwargs) -> None:
    try:
        trace = headers_for_task()
        if trace is not None and headers is not None:
            headers[CELERY_HEADER] = trace
    except Exception:
        logger.warning("adding the trace header to task %s failed", sender, exc_info=True)


def _incoming_trace(task) -> dict | None:
    request = task.request
    trace = getattr(request, CELERY_HEADER, None)
    if trace is None:
        trace = (getattr(request, "headers", None) or {}).get(CELERY_HEADER)
    if trace is None and getattr(request, "is_eager", False):
        trace = headers_for_task()  # eager: runs inline, under the caller's context
    return trace if isinstance(trace, dict) and trace.get("trace_id") else None


def _open_audit_context(task_id, task) -> None:
    """Writes a task makes are audited through `task`, as the user whose request started it
    (an eager task: its caller's user); services pass their own actor otherwise."""
    if getattr(task.request, "is_eager", False):
        actor = audit.current().resolve_actor()
    else:
        actor = (_incoming_trace(task) or {}).get("user_id")
    _audit_tokens[task_id] = audit.activate(audit.AuditContext(channel="task", actor=actor))


def on_task_prerun(sender=None, task_id=None, task=None, **kwargs) -> None:
    try:
        _open_audit_context(task_id, task)
    except Exception:
        logger.warning("opening the audit context of task %s failed", task_id, exc_info=True)
    try:
        # A worker's task collects the spans that end in it (its own included) for the write
        # buffer, as a request does; an eager task runs inside its caller's context.
        batch = None if getattr(task.request, "is_eager", False) else SpanBatch()
        trace = _incoming_trace(task)
        if trace is None:
            # No caller trace: spans opened by the task start their own trace.
            token = (
                activate(TraceContext(trace_id=new_trace_id(), span_batch=batch))
                if current() is None
                else None
            )
            _task_state[task_id] = (None, token, batch if token is not None else None)
            return
        handle = services.span_start(
            task.name,
            kind=SpanKind.TASK,
            trace_id=trace["trace_id"],
            parent_span_id=trace.get("parent_span_id") or "",
            attributes={"celery.task_id": task_id, "celery.task_name": task.name},
            persist=False,
        )
        handle.user_id = trace.get("user_id")
        token = activate(
            TraceContext(
                trace_id=handle.trace_id,
                span_id=handle.span_id,
                request_id=trace.get("request_id") or "",
                user_id=trace.get("user_id"),
                span_batch=batch,
            )
        )
        _task_state[task_id] = (handle, token, batch)
    except Exception:
        logger.warning("opening the span of task %s failed", task_id, exc_info=True)


def on_task_failure(sender=None, task_id=None, exception=None, **kwargs) -> None:
    state = _task_state.get(task_id)
    if state and state[0] is not None and exception is not None:
        state[0].record_error(exception)


def on_task_postrun(sender=None, task_id=None, task=None, state=None, **kwargs) -> None:
    audit_token = _audit_tokens.pop(task_id, None)
    if audit_token is not None:
        audit.deactivate(audit_token)
    entry = _task_state.pop(task_id, None)
    if entry is None:
        return
    handle, token, batch = entry
    try:
        if handle is not None:
            status = (
                SpanStatus.ERROR if state == "FAILURE" or handle.status == SpanStatus.ERROR else SpanStatus.OK
            )
            handle.set_attribute("celery.state", state or "")
            services.span_end(handle, status=status)
    finally:
        if token is not None:
            deactivate(token)
        if batch is not None:
            services.hand_spans_to_buffer(batch)
        if not getattr(task.request, "is_eager", False):
            buffer.flush_if_due()


def connect() -> None:
    from django.apps import apps
    from django.db.models.signals import pre_delete

    from agentmesh.core.models import OwnedModel

    for model in apps.get_models():
        if issubclass(model, OwnedModel):  # what the API writes; keeps fast deletes elsewhere
            pre_delete.connect(
                remember_pk, sender=model, dispatch_uid=f"observability.pk.{model._meta.label}"
            )
    write_audited.connect(on_write_audited, dispatch_uid="observability.audit")
    user_logged_in.connect(on_login, dispatch_uid="observability.login")
    user_login_failed.connect(on_login_failed, dispatch_uid="observability.login_failed")
    celery_signals.before_task_publish.connect(on_before_task_publish, dispatch_uid="observability.publish")
    celery_signals.task_prerun.connect(on_task_prerun, dispatch_uid="observability.prerun")
    celery_signals.task_failure.connect(on_task_failure, dispatch_uid="observability.failure")
    celery_signals.task_postrun.connect(on_task_postrun, dispatch_uid="observability.postrun")
