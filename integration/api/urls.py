"""/api/v1/integration/…: each area (export/import and sync, webhooks and triggers, API
connections and external tools, cross-domain flows and batch) adds its urlpatterns here."""

from django.urls import path

from . import flows

app_name = "integration-api"

urlpatterns: list = []

urlpatterns += [
    path("agent-from-template", flows.AgentFromTemplateView.as_view(), name="agent-from-template"),
    path("deploy-agent-workflow", flows.DeployAgentWorkflowView.as_view(), name="deploy-agent-workflow"),
    path("batch/agents", flows.BatchAgentsView.as_view(), name="batch-agents"),
    path("batch/workflows", flows.BatchWorkflowsView.as_view(), name="batch-workflows"),
    path("status", flows.IntegrationStatusView.as_view(), name="status"),
]
