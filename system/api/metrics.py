from django.conf import settings
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from agentmesh.core.permissions import is_admin
from observability.api.views import LogViewSet

from .. import selectors
from .metrics_serializers import (
    MetricHistoryQuerySerializer,
    MetricHistorySerializer,
    SystemMetricsSerializer,
)


class IsPlatformAdmin(BasePermission):
    """Admins only (developers and users get 403)."""

    def has_permission(self, request, view) -> bool:
        return is_admin(request.user)


ADMIN_ONLY = [IsAuthenticated, IsPlatformAdmin]


class SystemMetricsView(APIView):
    permission_classes = ADMIN_ONLY

    @extend_schema(operation_id="system_metrics", responses={200: SystemMetricsSerializer})
    def get(self, request):
        """A snapshot of the system now: host CPU, memory, disk and load; the RSS of this API process
        and of every worker's main and pool processes (asked over Celery remote control, waiting at
        most SYSTEM_METRICS_WORKER_TIMEOUT); database connections in use (PostgreSQL; null on
        SQLite); queue depths; API request rate, error rate and p95 latency over the last minute;
        agent runs and workflow executions running. Admins only."""
        return Response(SystemMetricsSerializer(selectors.system_metrics_snapshot()).data)


class SystemMetricsHistoryView(APIView):
    permission_classes = ADMIN_ONLY

    @extend_schema(
        operation_id="system_metrics_history",
        parameters=[MetricHistoryQuerySerializer],
        responses={200: MetricHistorySerializer},
    )
    def get(self, request):
        """History of one sampled metric. The samples in [since, until) are downsampled in the
        database into `step`-second buckets (average, minimum, maximum, sample count). Samples are taken every
        SYSTEM_METRICS_INTERVAL seconds by beat and kept SYSTEM_METRICS_RETENTION_DAYS days.
        An unknown metric, a bad date, `since` not before `until`, a `step` out of range or more than
        SYSTEM_METRICS_HISTORY_MAX_BUCKETS buckets is a 400 naming the parameter. Admins only."""
        query = MetricHistoryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        body = {
            **params,
            "description": selectors.HISTORY_METRICS[params["metric"]],
            "interval": settings.SYSTEM_METRICS_INTERVAL,
            "buckets": selectors.metric_history(**params),
        }
        return Response(MetricHistorySerializer(body).data)


_LOGS_DOC = """The system's log records: observability's log sink (records at or above
OBSERVABILITY_LOG_DB_LEVEL, from every API process, worker and beat), newest first, cursor
pagination. Filters: `level` (minimum), `logger` (name prefix), `since`/`until`, `request_id`,
`trace_id`, `q` (text in the message). The same records as GET /observability/logs, for admins
only and unscoped."""


@extend_schema_view(
    list=extend_schema(operation_id="system_logs_list", summary="System log records", description=_LOGS_DOC)
)
class SystemLogViewSet(LogViewSet):
    __doc__ = _LOGS_DOC

    permission_classes = ADMIN_ONLY
