"""System reads, one module per area; each area adds its import here."""

from .metrics import HISTORY_METRICS, metric_history, system_metrics_snapshot  # noqa: F401
