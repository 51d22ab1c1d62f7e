"""Helpers for enqueuing Celery tasks."""

from functools import partial

from django.db import transaction


def enqueue_on_commit(task, *args, **kwargs) -> None:
    """Send `task` once the surrounding transaction commits (immediately outside one).

    Arguments must be ids and small JSON, never secrets.
    """
    transaction.on_commit(partial(task.apply_async, args=args, kwargs=kwargs))
