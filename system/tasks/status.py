import logging
import socket

from celery import shared_task
from celery.signals import before_task_publish
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .. import services

logger = logging.getLogger(__name__)

BEAT_TICK_TASK = "system.tasks.record_beat_tick"


@shared_task(name=BEAT_TICK_TASK, ignore_result=True)
def record_beat_tick(sent_at: str | None = None) -> None:
    """Periodic (every SYSTEM_BEAT_TICK_SECONDS): beat's tick, run by a worker; also deletes the
    broadcast messages nobody reads on the filesystem broker."""
    worker = getattr(record_beat_tick.request, "hostname", None) or socket.gethostname()
    services.beat_tick_record(sent_at=parse_datetime(sent_at) if sent_at else None, worker=worker)
    services.broker_housekeeping()


@shared_task(
    name="system.tasks.evaluate_system_checks", ignore_result=True, soft_time_limit=60, time_limit=90
)
def evaluate_system_checks() -> None:
    """Periodic (every SYSTEM_CHECKS_INTERVAL_SECONDS): the built-in system checks."""
    request = evaluate_system_checks.request
    services.system_checks_evaluate(running_on="" if request.is_eager else (request.hostname or ""))


@before_task_publish.connect(sender=BEAT_TICK_TASK, dispatch_uid="system.status.beat_tick_sent")
def _stamp_beat_tick(sender=None, body=None, **kwargs) -> None:
    """In the publishing process (beat): stamp the tick with its publish time and record it, so
    beat's liveness is known even when no worker runs the task."""
    now = timezone.now()
    task_kwargs = body[1] if isinstance(body, tuple | list) and len(body) > 1 else None
    if isinstance(body, dict):  # task message protocol 1
        task_kwargs = body.setdefault("kwargs", {})
    if isinstance(task_kwargs, dict):
        task_kwargs.setdefault("sent_at", now.isoformat())
    try:
        services.beat_tick_sent(at=now)
    except Exception:  # never stop beat from publishing
        logger.warning("recording beat's tick failed", exc_info=True)
