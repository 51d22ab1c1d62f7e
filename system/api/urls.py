"""/api/v1/system/…: each area (health, status, config and flags, metrics, control, backups)
adds its urlpatterns here."""

from django.urls import path

from . import backups, config, flags, health, status

app_name = "system-api"

urlpatterns = [
    path("health", health.HealthView.as_view(), name="health"),
    # config: runtime configuration and feature flags
    path("config", config.RuntimeConfigView.as_view(), name="config"),
    path("flags", flags.FeatureFlagListView.as_view(), name="flag-list"),
    path("flags/<str:name>", flags.FeatureFlagDetailView.as_view(), name="flag-detail"),
    # backups
    path("backup", backups.BackupCreateView.as_view(), name="backup-create"),
    path("backups", backups.BackupListView.as_view(), name="backup-list"),
    path("backups/<uuid:id>", backups.BackupDetailView.as_view(), name="backup-detail"),
    path("backups/<uuid:id>/download", backups.BackupDownloadView.as_view(), name="backup-download"),
    # status: status, info, stats, alerts
    path("status", status.SystemStatusView.as_view(), name="status"),
    path("info", status.SystemInfoView.as_view(), name="info"),
    path("stats", status.SystemStatsView.as_view(), name="stats"),
    path("alerts", status.SystemAlertsView.as_view(), name="alerts"),
]
