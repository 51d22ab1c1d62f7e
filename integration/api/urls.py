"""/api/v1/integration/…: each area (export/import and sync, webhooks and triggers, API
connections and external tools, cross-domain flows and batch) adds its urlpatterns here."""

from django.urls import path

from agentmesh.core.routers import ApiRouter

from .connections import ApiConnectionCreateView, ApiConnectionViewSet, ExternalToolView

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
