"""Generic audited writes for models without a service of their own (the base viewset, the
admin)."""

from django.db import transaction
from django.db.models import Model

from .audit import audited
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
