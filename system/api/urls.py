"""/api/v1/system/…: each area (health, status, config and flags, metrics, control, backups)
adds its urlpatterns here."""

from django.urls import path

from . import control, health, metrics

app_name = "system-api"

urlpatterns = [
    path("health", health.HealthView.as_view(), name="health"),
    # --- metrics and control
    path("metrics", metrics.SystemMetricsView.as_view(), name="metrics"),
    path("metrics/history", metrics.SystemMetricsHistoryView.as_view(), name="metrics-history"),
    path("logs", metrics.SystemLogViewSet.as_view({"get": "list"}), name="logs"),
    path("restart/<str:service>", control.RestartView.as_view(), name="restart"),
    path("cache/clear", control.CacheClearView.as_view(), name="cache-clear"),
]
