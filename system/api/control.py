from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import services
from .control_serializers import CacheClearInputSerializer, ControlRequestSerializer, RestartInputSerializer
from .metrics import ADMIN_ONLY

_SERVICE = OpenApiParameter(
    "service",
    str,
    OpenApiParameter.PATH,
    enum=list(services.RESTART_SERVICES),
    description="; ".join(f"`{name}`: {text}" for name, text in services.RESTART_SERVICES.items()),
)


class RestartView(APIView):
    permission_classes = ADMIN_ONLY

    @extend_schema(
        operation_id="system_restart",
        parameters=[_SERVICE],
        request=RestartInputSerializer,
        responses={202: ControlRequestSerializer},
    )
    def post(self, request, service: str):
        """Restart a service: `workers` (Celery pool restart, or warm shutdown with mode `shutdown`),
        `breakers` (close every LLM circuit breaker), `caches` (reconnect the cache clients),
        `connections` (close pooled database connections), `config` (reload the runtime
        configuration), in this process and, over Celery remote control, in every worker (or the
        `workers` named). Answers 202 with the stored record: what this process did and each worker's
        reply (empty when no worker answered within SYSTEM_CONTROL_REPLY_TIMEOUT). An unknown service
        is a 404 naming the valid ones. Admins only; audited."""
        if service not in services.RESTART_SERVICES:
            raise NotFound(
                f"Unknown service {service[:50]!r}; valid: {', '.join(services.RESTART_SERVICES)}."
            )
        data = RestartInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        record = services.service_restart(service=service, user=request.user, **data.validated_data)
        return Response(ControlRequestSerializer(record).data, status=status.HTTP_202_ACCEPTED)


class CacheClearView(APIView):
    permission_classes = ADMIN_ONLY

    @extend_schema(
        operation_id="system_cache_clear",
        request=CacheClearInputSerializer,
        responses={200: ControlRequestSerializer},
    )
    def post(self, request):
        """Clear a cache of settings.CACHES (`cache`, default `default`; unknown: 400 naming it), all
        of it or only the keys starting with `prefix`. Redis: SCAN + UNLINK of the cache's own keys
        (never FLUSHDB); `result.cleared` is the number of keys removed. Admins only; audited."""
        data = CacheClearInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        record = services.cache_clear(user=request.user, **data.validated_data)
        return Response(ControlRequestSerializer(record).data)
