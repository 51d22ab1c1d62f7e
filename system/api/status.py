"""/system/status (everyone: summary; admins: details), /info, /stats and /alerts (admins)."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from agentmesh.core.permissions import is_admin

from .. import selectors, services
from .status_serializers import (
    SystemAlertsSerializer,
    SystemInfoSerializer,
    SystemStatsSerializer,
    SystemStatusSerializer,
    SystemStatusSummarySerializer,
)


class IsPlatformAdmin(BasePermission):
    message = "Only admins may do this."

    def has_permission(self, request, view) -> bool:
        return is_admin(request.user)


class SystemStatusView(APIView):
    """Overall status (ok, degraded, down) and each component's state; admins also get the
    details: database round trip, workers (name, host, concurrency, active tasks), beat's last
    tick, queue depths and the runs queued, running and waiting. Measured at most once every
    SYSTEM_STATUS_CACHE_SECONDS per API process, each probe within a deadline."""

    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="system_status", request=None, responses={200: SystemStatusSerializer})
    def get(self, request):
        detail = is_admin(request.user)
        serializer = SystemStatusSerializer if detail else SystemStatusSummarySerializer
        return Response(serializer(selectors.system_status(detail=detail)).data)


class SystemInfoView(APIView):
    """Versions (package, git commit, Python, Django, Celery, database), broker kind, run mode,
    time zone, enabled features and uptime of the answering process. Admins only; no secret
    and no connection string."""

    permission_classes = [IsAuthenticated, IsPlatformAdmin]

    @extend_schema(operation_id="system_info", request=None, responses={200: SystemInfoSerializer})
    def get(self, request):
        return Response(SystemInfoSerializer(selectors.system_info()).data)


class SystemStatsView(APIView):
    """Counts across the system: users by role, agents by status, tools by type, workflows,
    agent runs and workflow executions per day by status (7 and 30 days), tokens and cost,
    table sizes. Admins only."""

    permission_classes = [IsAuthenticated, IsPlatformAdmin]

    @extend_schema(operation_id="system_stats", request=None, responses={200: SystemStatsSerializer})
    def get(self, request):
        return Response(SystemStatsSerializer(selectors.system_stats()).data)


class SystemAlertsView(APIView):
    """The system's alerts: the built-in checks (no live worker, queue backlog, beat silent,
    database slow, disk low, error rate high) with their last result, and every open alert —
    the checks' own, the observability alert rules' and manual ones. Evaluates the checks first
    when beat has not done so lately. Admins only."""

    permission_classes = [IsAuthenticated, IsPlatformAdmin]

    @extend_schema(
        operation_id="system_alerts",
        request=None,
        responses={200: OpenApiResponse(SystemAlertsSerializer, description="Checks and open alerts.")},
    )
    def get(self, request):
        services.system_checks_evaluate_if_stale()
        return Response(SystemAlertsSerializer(selectors.system_alerts()).data)
