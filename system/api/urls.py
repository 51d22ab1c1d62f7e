"""/api/v1/system/…: each area (health, status, config and flags, metrics, control, backups)
adds its urlpatterns here."""

from django.urls import path

from . import config, flags, health

app_name = "system-api"

urlpatterns = [
    path("health", health.HealthView.as_view(), name="health"),
    # config: runtime configuration and feature flags
    path("config", config.RuntimeConfigView.as_view(), name="config"),
    path("flags", flags.FeatureFlagListView.as_view(), name="flag-list"),
    path("flags/<str:name>", flags.FeatureFlagDetailView.as_view(), name="flag-detail"),
]
