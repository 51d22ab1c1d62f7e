"""`/metrics` at the site root: the Prometheus exposition (admin session/JWT or METRICS_TOKEN)."""

from django.urls import path

from .views import PrometheusMetricsView

urlpatterns = [path("", PrometheusMetricsView.as_view(), name="prometheus-metrics")]
