from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from agentmesh.core.viewsets import ServiceBackedViewSet

from ..models import ApiConnection
from ..services import connections as services
from .connections_serializers import (
    ApiConnectionSerializer,
    ExternalToolRequestSerializer,
    ExternalToolResultSerializer,
)


@extend_schema_view(
    list=extend_schema(operation_id="integration_api_connections_list"),
    create=extend_schema(operation_id="integration_api_connections_create"),
    retrieve=extend_schema(operation_id="integration_api_connections_retrieve"),
    update=extend_schema(operation_id="integration_api_connections_update"),
    partial_update=extend_schema(operation_id="integration_api_connections_partial_update"),
    destroy=extend_schema(operation_id="integration_api_connections_destroy"),
)
class ApiConnectionViewSet(ServiceBackedViewSet):
    """Named external APIs (base URL, auth from a secret, default headers, timeouts) that HTTP
    tools use instead of repeating URL and credentials."""

    queryset = ApiConnection.objects.select_related("owner", "secret")
    serializer_class = ApiConnectionSerializer
    filterset_fields = ["auth_type", "last_check_ok"]
    search_fields = ["name", "description", "base_url"]
    ordering_fields = ["name", "created_at", "updated_at", "last_check_at"]
    object_actions = {"check": "change"}

    def create_object(self, validated_data):
        return services.api_connection_create(
            owner=self.request.user, actor=self.request.user, **validated_data
        )

    def update_object(self, instance, validated_data):
        return services.api_connection_update(connection=instance, actor=self.request.user, **validated_data)

    def perform_destroy(self, instance):
        services.api_connection_delete(connection=instance)

    @extend_schema(
        operation_id="integration_api_connections_check",
        request=None,
        responses={200: ApiConnectionSerializer},
    )
    @action(detail=True, methods=["post"])
    def check(self, request, *args, **kwargs):
        """Call the health path with the connection's auth and record the result (ok or not)."""
        connection = services.api_connection_check(connection=self.get_object(), actor=request.user)
        return Response(self.get_serializer(connection).data)


class ApiConnectionCreateView(ApiConnectionViewSet):
    """`POST /api-connection`, the contract's spelling of creating a connection."""

    @extend_schema(operation_id="integration_api_connection_create")
    def create(self, request, *args, **kwargs):
        """Create an API connection (same as POST /api-connections)."""
        return super().create(request, *args, **kwargs)


class ExternalToolView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="integration_external_tool",
        request=ExternalToolRequestSerializer,
        responses={200: ExternalToolResultSerializer, 201: ExternalToolResultSerializer},
    )
    def post(self, request):
        """Import tools from an OpenAPI document or an MCP server, or define one HTTP tool
        (dry run: what would be created, nothing written; deploy: all or nothing)."""
        data = ExternalToolRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.external_tool_import(owner=request.user, **data.validated_data)
        result["tools"] = [_item(t) for t in result["tools"]]
        code = status.HTTP_200_OK if result["dry_run"] else status.HTTP_201_CREATED
        return Response(ExternalToolResultSerializer(result).data, status=code)


def _item(tool) -> dict:
    if isinstance(tool, dict):
        return tool
    return {
        "id": tool.pk,
        "name": tool.name,
        "type": tool.type,
        "status": tool.status,
        "description": tool.description,
        "config": tool.config,
        "parameters_schema": tool.parameters_schema,
    }
