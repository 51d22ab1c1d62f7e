from django.urls import include, path

from agentmesh.urls import handler400, handler403, handler404, handler500  # noqa: F401
from agentmesh.urls import urlpatterns as project_urlpatterns

from .views import router

urlpatterns = [
    path("api/v1/test/", include((router.urls, "testapp"), namespace="testapp-api")),
    *project_urlpatterns,
]
