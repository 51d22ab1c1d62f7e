"""/api/v1/integration/…: each area (export/import and sync, webhooks and triggers, API
connections and external tools, cross-domain flows and batch) adds its urlpatterns here."""

from django.urls import path

from agentmesh.core.routers import ApiRouter

from . import bundle, flows
from .connections import ApiConnectionCreateView, ApiConnectionViewSet, ExternalToolView
from .webhooks import TriggerHookView, WebhookEventTypesView, WebhookViewSet, WorkflowTriggerViewSet

app_name = "integration-api"

urlpatterns: list = []

# API connections and external tools
connections_router = ApiRouter()
connections_router.register("api-connections", ApiConnectionViewSet, basename="api-connection")
urlpatterns += [
    path("api-connection", ApiConnectionCreateView.as_view({"post": "create"}), name="api-connection-create"),
    path("external-tool", ExternalToolView.as_view(), name="external-tool"),
    *connections_router.urls,
]

# webhooks and triggers (POST /webhook creates, as in the contract; the rest under /webhooks)
_webhook = WebhookViewSet.as_view
_triggers = ApiRouter()
_triggers.register("triggers", WorkflowTriggerViewSet, basename="trigger")
urlpatterns += [
    path("webhook", _webhook({"post": "create"}), name="webhook-create"),
    path("webhooks", _webhook({"get": "list"}), name="webhook-list"),
    path(
        "webhooks/<uuid:pk>",
        _webhook({"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}),
        name="webhook-detail",
    ),
    path("webhooks/<uuid:pk>/test", _webhook({"post": "test"}), name="webhook-test"),
    path("webhooks/<uuid:pk>/deliveries", _webhook({"get": "deliveries"}), name="webhook-deliveries"),
    path(
        "webhooks/<uuid:pk>/deliveries/<uuid:delivery_id>/redeliver",
        _webhook({"post": "redeliver"}),
        name="webhook-redeliver",
    ),
    path("webhook-event-types", WebhookEventTypesView.as_view(), name="webhook-event-types"),
    path("hooks/<str:token>", TriggerHookView.as_view(), name="trigger-hook"),
    *_triggers.urls,
]

# export, import and master-data sync
urlpatterns += [
    path("export", bundle.ExportView.as_view(), name="export"),
    path("import", bundle.ImportView.as_view(), name="import"),
    path("import-file", bundle.ImportFileView.as_view(), name="import-file"),
    path("sync-master-data", bundle.SyncMasterDataView.as_view(), name="sync-master-data"),
    path("jobs/<uuid:pk>", bundle.IntegrationJobView.as_view(), name="job-detail"),
]

# cross-domain flows, batch creates and the integration status
urlpatterns += [
    path("agent-from-template", flows.AgentFromTemplateView.as_view(), name="agent-from-template"),
    path("deploy-agent-workflow", flows.DeployAgentWorkflowView.as_view(), name="deploy-agent-workflow"),
    path("batch/agents", flows.BatchAgentsView.as_view(), name="batch-agents"),
    path("batch/workflows", flows.BatchWorkflowsView.as_view(), name="batch-workflows"),
    path("status", flows.IntegrationStatusView.as_view(), name="status"),
]
