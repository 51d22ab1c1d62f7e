from django.urls import path

from agentmesh.core.routers import ApiRouter

from .views import (
    AlertRuleViewSet,
    AlertViewSet,
    EventViewSet,
    HealthView,
    LogViewSet,
    MetricsView,
    TraceViewSet,
)

app_name = "observability-api"

router = ApiRouter()
router.register("events", EventViewSet, basename="event")
router.register("traces", TraceViewSet, basename="trace")
router.register("logs", LogViewSet, basename="log")
router.register("alerts", AlertViewSet, basename="alert")
router.register("alert-rules", AlertRuleViewSet, basename="alertrule")

urlpatterns = [
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("health", HealthView.as_view(), name="health"),
    *router.urls,
]
