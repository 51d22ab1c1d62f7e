from celery import shared_task

from .. import services


@shared_task(name="system.tasks.sample_system_metrics", ignore_result=True)
def sample_system_metrics() -> None:
    """Periodic (every SYSTEM_METRICS_INTERVAL s): record the history metrics and prune old samples."""
    services.metric_samples_record()
