"""Generic audited writes for models without a service of their own (the base viewset, the
admin)."""

from collections.abc import Callable

from django.db import transaction
from django.db.models import Model, QuerySet

from .audit import audited
from .exceptions import ConflictError
from .signals import snapshot


@transaction.atomic
def object_save(*, instance: Model, before: dict | None = None) -> Model:
    """Save `instance` and record a create, or an update against `before` (default: the row
    as stored)."""
    adding = instance._state.adding
    if not adding and before is None:
        stored = type(instance)._default_manager.filter(pk=instance.pk).first()
        before = snapshot(stored) if stored is not None else {}
    instance.save()
    audited("create" if adding else "update", instance, before=before)
    return instance


@transaction.atomic
def object_delete(*, instance: Model) -> None:
    before = snapshot(instance)
    instance.delete()
    audited("delete", instance, before=before)


@transaction.atomic
def object_delete_keeping_history(
    *, instance: Model, unfinished: Callable[[list], QuerySet], what: str, advice: str
) -> None:
    """Delete an agent, workflow or tool: its runs stay (their foreign key is nulled), and the
    delete is refused (409) while `unfinished([instance])` has any, since a running run still
    saves its row with the old key. The row is locked first, so no run starts meanwhile."""
    instance = type(instance)._default_manager.select_for_update().get(pk=instance.pk)
    count = unfinished([instance]).count()
    if count:
        raise ConflictError(f"The {instance._meta.verbose_name} has {count} {what}; {advice}.")
    object_delete(instance=instance)
