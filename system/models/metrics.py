from django.db import models


class MetricSample(models.Model):
    """One value of one system metric (GET /system/metrics/history), taken by the beat task
    `system.tasks.sample_system_metrics` every SYSTEM_METRICS_INTERVAL seconds and pruned after
    SYSTEM_METRICS_RETENTION_DAYS."""

    id = models.BigAutoField(primary_key=True)
    metric = models.CharField(max_length=64)
    value = models.FloatField()
    taken_at = models.DateTimeField()

    class Meta:
        ordering = ["-taken_at", "metric"]
        verbose_name = "metric sample"
        indexes = [
            models.Index(fields=["metric", "taken_at"], name="sys_metric_sample"),
            models.Index(fields=["taken_at"], name="sys_metric_sample_ts"),
        ]

    def __str__(self) -> str:
        return f"{self.metric}={self.value} @ {self.taken_at:%Y-%m-%d %H:%M:%S}"
