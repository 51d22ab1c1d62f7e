"""/api/v1/integration/…: each area (export/import and sync, webhooks and triggers, API
connections and external tools, cross-domain flows and batch) adds its urlpatterns here."""

app_name = "integration-api"

urlpatterns: list = []
