from drf_spectacular.utils import extend_schema
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from agentmesh.core.permissions import is_admin

from ..selectors import config as config_selectors
from ..services import config as config_services
from .config_serializers import RuntimeConfigSerializer, RuntimeConfigUpdateSerializer


class IsPlatformAdmin(BasePermission):
    message = "Only administrators may do this."

    def has_permission(self, request, view):
        return is_admin(request.user)


def _config() -> dict:
    return {
        "settings": config_selectors.config_values(),
        "effective": config_selectors.config_effective_settings(),
    }


class RuntimeConfigView(APIView):
    """Runtime configuration: the settings that change without a restart, and the read-only
    settings in force (admin only)."""

    permission_classes = [IsAuthenticated, IsPlatformAdmin]

    @extend_schema(operation_id="system_config_retrieve", responses={200: RuntimeConfigSerializer})
    def get(self, request):
        """The runtime configuration: each key's value, default, type, range and description, and
        the read-only settings in force (run mode, broker kind, database vendor, pool, time zone,
        log level …; never a secret or a URL). Admin only."""
        return Response(RuntimeConfigSerializer(_config()).data)

    @extend_schema(
        operation_id="system_config_update",
        request=RuntimeConfigUpdateSerializer,
        responses={200: RuntimeConfigSerializer},
    )
    def put(self, request):
        """Change runtime settings: `{"values": {KEY: value}}` (null resets a key to its default).

        All or nothing: an unknown key, a wrong type or a value out of range is a 400 naming
        `values.<KEY>`. Audited; in force in every API and worker process within
        RUNTIME_CONFIG_CACHE_SECONDS. Admin only."""
        data = RuntimeConfigUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        config_services.config_update(values=data.validated_data["values"])
        return Response(RuntimeConfigSerializer(_config()).data)
