"""/api/v1/system/…: each area (health, status, config and flags, metrics, control, backups)
adds its urlpatterns here."""

from django.urls import path

from . import health

app_name = "system-api"

urlpatterns = [
    path("health", health.HealthView.as_view(), name="health"),
]
