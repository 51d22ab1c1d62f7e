"""The audit trail: every write says who did it, through what, to what, and which fields changed.

Services call `audited()` where they write, so every path (API, admin, management command,
Celery task, shell) is covered by the same call. The entry points only say who and through
what, in a context variable (`audit_context`): the request middleware (channel `api`, or
`admin` under the admin site, actor the request's user), Celery tasks (`task`) and management
commands (`command`). Outside all of them the channel is `system` (shell, data migrations).

`audited()` sends `agentmesh.core.signals.write_audited`; observability records it as an
`audit.<action>` event inside the write's transaction, so a rolled-back write leaves none.
"""

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db.models import Model

from .signals import audit_changes, mask_sensitive, snapshot, write_audited

CHANNELS = ("api", "admin", "command", "task", "system")


@dataclass(frozen=True)
class AuditContext:
    channel: str
    actor: Any = None  # a User, a user id, or None (the system)
    request: Any = None  # its user is the actor: DRF authenticates inside the view, later

    def resolve_actor(self):
        if self.actor is not None:
            return self.actor
        user = getattr(self.request, "user", None)
        return user if getattr(user, "is_authenticated", False) else None


SYSTEM = AuditContext(channel="system")
_current: contextvars.ContextVar[AuditContext | None] = contextvars.ContextVar(
    "agentmesh_audit", default=None
)


def current() -> AuditContext:
    return _current.get() or SYSTEM


def activate(ctx: AuditContext) -> contextvars.Token:
    return _current.set(ctx)


def deactivate(token: contextvars.Token) -> None:
    try:
        _current.reset(token)
    except ValueError:  # reset from another context (a task signal in another thread)
        _current.set(None)


@contextmanager
def audit_context(*, channel: str, actor=None, request=None) -> Iterator[AuditContext]:
    """Writes inside the block are recorded as made by `actor` through `channel`."""
    ctx = AuditContext(channel=channel, actor=actor, request=request)
    token = activate(ctx)
    try:
        yield ctx
    finally:
        deactivate(token)


def audited(
    action: str,
    instance: Model | type[Model],
    *,
    before: dict | None = None,
    actor=None,
    changes: dict | None = None,
    details: dict | None = None,
) -> None:
    """Record `action` on `instance` (a model class for a bulk write).

    - `create`: every field of the new row is a change.
    - `update` and other state changes: pass `before=snapshot(instance)` taken before the
      write; the fields whose value differs now are the changes.
    - `delete`: pass `before` (its primary key names the deleted row).
    `changes` adds values the row's own fields do not show (many-to-many ids); `details`
    adds context (who a share grants to). Sensitive values are masked in both.
    The actor is the entry point's (the request's user, a command's --actor); `actor` is
    used when a request or task has none (self-registration, a task acting for its user).
    """
    ctx = current()
    model = instance if isinstance(instance, type) else type(instance)
    diff: dict = {}
    if not isinstance(instance, type):
        if action == "create":
            diff = audit_changes(model, {}, snapshot(instance))
        elif before is not None and action != "delete":
            diff = audit_changes(model, before, snapshot(instance))
        if instance.pk is None and before:
            instance._audit_pk = before.get(model._meta.pk.attname)
    if changes:
        diff.update(mask_sensitive(model, changes))
    who = ctx.resolve_actor()
    if who is None and ctx.channel != "command":  # a command's operator is --actor or the system
        who = actor
    write_audited.send(
        sender=model,
        actor=who,
        channel=ctx.channel,
        action=action,
        instance=instance,
        changes=diff,
        details=mask_sensitive(model, details) if details else {},
    )
