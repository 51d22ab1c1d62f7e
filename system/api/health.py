from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import services
from .health_serializers import HealthSerializer


class HealthView(APIView):
    """Liveness/readiness for load balancers: no authentication, no secrets."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = []

    @extend_schema(operation_id="system_health", responses={200: HealthSerializer, 503: HealthSerializer})
    def get(self, request):
        result = services.health_check()
        return Response(HealthSerializer(result).data, status=200 if result["status"] == "ok" else 503)
