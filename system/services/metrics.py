"""Writes of the metrics area: taking the periodic samples and pruning old ones."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..models import MetricSample
from ..selectors import metrics as metrics_selectors


@transaction.atomic
def metric_samples_record(
    *, values: dict[str, float] | None = None, now: datetime | None = None
) -> list[MetricSample]:
    """Store one sample of each history metric taken at `now` (default: the current values, measured
    here), then prune the samples older than SYSTEM_METRICS_RETENTION_DAYS."""
    now = now or timezone.now()
    if values is None:
        values = metrics_selectors.sampled_values(
            metrics_selectors.system_metrics_snapshot(include_workers=False)
        )
    unknown = set(values) - set(metrics_selectors.HISTORY_METRICS)
    if unknown:
        raise ValueError(f"not history metrics: {sorted(unknown)}")
    samples = MetricSample.objects.bulk_create(
        MetricSample(metric=name, value=float(value), taken_at=now) for name, value in sorted(values.items())
    )
    metric_samples_prune(now=now)
    return samples


def metric_samples_prune(*, now: datetime | None = None) -> int:
    """Delete the samples older than SYSTEM_METRICS_RETENTION_DAYS; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.SYSTEM_METRICS_RETENTION_DAYS)
    deleted, _ = MetricSample.objects.filter(taken_at__lt=cutoff).delete()
    return deleted
