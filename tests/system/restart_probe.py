"""A task for the restart tests (loaded by the worker with --include): it records how often the
runtime configuration was reloaded in the pool process that runs it."""

from celery import shared_task

from system.signals import runtime_config_reload

_reloads = [0]


def _count(sender, **kwargs) -> None:
    _reloads[0] += 1


runtime_config_reload.connect(_count, dispatch_uid="tests.restart_probe")


@shared_task(name="tests.system.record_config_reloads")
def record_config_reloads(hostname: str) -> None:
    from django.utils import timezone

    from system.models import WorkerHeartbeat

    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname, defaults={"beats": _reloads[0], "seen_at": timezone.now()}
    )
