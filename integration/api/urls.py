"""/api/v1/integration/…: each area (export/import and sync, webhooks and triggers, API
connections and external tools, cross-domain flows and batch) adds its urlpatterns here."""

from django.urls import path

from . import bundle

app_name = "integration-api"

urlpatterns: list = []

urlpatterns += [
    path("export", bundle.ExportView.as_view(), name="export"),
    path("import", bundle.ImportView.as_view(), name="import"),
    path("import-file", bundle.ImportFileView.as_view(), name="import-file"),
    path("sync-master-data", bundle.SyncMasterDataView.as_view(), name="sync-master-data"),
    path("jobs/<uuid:pk>", bundle.IntegrationJobView.as_view(), name="job-detail"),
]
