"""/api/v1/system/…: each area (health, status, config and flags, metrics, control, backups)
adds its urlpatterns here."""

from django.urls import path

from . import health, status

app_name = "system-api"

urlpatterns = [
    path("health", health.HealthView.as_view(), name="health"),
    # status: status, info, stats, alerts
    path("status", status.SystemStatusView.as_view(), name="status"),
    path("info", status.SystemInfoView.as_view(), name="info"),
    path("stats", status.SystemStatsView.as_view(), name="stats"),
    path("alerts", status.SystemAlertsView.as_view(), name="alerts"),
]
