from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

api_v1 = [
    path("auth/", include("agentmesh.accounts.api.urls")),
    path("", include("tools.api.urls")),  # the router registers under tools
    path("", include("agents.api.urls")),  # the router registers under agents
    path("", include("workflows.api.urls")),  # the router registers under workflows
    path("", include("templates_app.api.urls")),  # templates, and /workflows|agents/{id}/template
    path("master-data/", include("masterdata.api.urls")),
    path("observability/", include("observability.api.urls")),
    path("system/", include("system.api.urls")),
    path("integration/", include("integration.api.urls")),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("admin/", admin.site.urls),
    path("metrics", include("observability.api.prometheus_urls")),  # Prometheus exposition
]

handler400 = "agentmesh.core.views.bad_request"
handler403 = "agentmesh.core.views.permission_denied"
handler404 = "agentmesh.core.views.not_found"
handler500 = "agentmesh.core.views.server_error"
