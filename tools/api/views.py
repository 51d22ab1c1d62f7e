from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from agentmesh.core.features import require_feature
from agentmesh.core.serializers import representation
from agentmesh.core.viewsets import ChildRecordViewSet, ServiceBackedViewSet
from masterdata.api.serializers import CategoryCountSerializer

from .. import selectors, services
from ..executors import registry
from ..filters import ToolExecutionFilter, ToolFilter
from ..models import Tool, ToolExecution
from ..testing import tool_test
from .serializers import (
    ExecuteRequestSerializer,
    MCPImportSerializer,
    OpenAPIImportSerializer,
    TestReportSerializer,
    TestRequestSerializer,
    ToolExecutionSerializer,
    ToolSerializer,
    ToolStatsSerializer,
    ToolTypeSerializer,
    ValidationReportSerializer,
)

ASYNC_PARAMETER = OpenApiParameter(
    "async", bool, description="Queue the call for a worker and answer 202 with the execution to poll."
)


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in {"1", "true", "yes", "on"}


execution_result = representation(ToolExecutionSerializer)


class ToolViewSet(ServiceBackedViewSet):
    queryset = Tool.objects.select_related("owner")
    serializer_class = ToolSerializer
    filterset_class = ToolFilter
    search_fields = ["name", "description", "category"]
    ordering_fields = ["name", "category", "type", "status", "created_at", "updated_at"]
    object_actions = {
        "execute": "use",
        "test": "change",
        "validate": "change",
        "deploy": "change",
        "undeploy": "change",
        "stats": "view",
    }
    create_actions = {"import_openapi", "import_mcp"}

    def create_object(self, validated_data):
        return services.tool_create(owner=self.request.user, **validated_data)

    def update_object(self, instance, validated_data):
        return services.tool_update(tool=instance, **validated_data)

    def perform_destroy(self, instance):
        services.tool_delete(tool=instance)

    @extend_schema(
        operation_id="tools_execute",
        request=ExecuteRequestSerializer,
        parameters=[ASYNC_PARAMETER],
        responses={200: ToolExecutionSerializer, 202: ToolExecutionSerializer},
    )
    @action(detail=True, methods=["post"])
    def execute(self, request, *args, **kwargs):
        """Run the tool with `arguments` (checked against its schema; 400 names the argument).

        Waits for the result (bounded by the tool's timeout and TOOLS_SYNC_MAX_SECONDS) unless
        `?async=true`. A failed call is still a 200: see `status`, `error` and `error_kind`.
        """
        tool = self.get_object()
        data = ExecuteRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        arguments = data.validated_data["arguments"]
        if _truthy(request.query_params.get("async")):
            require_feature("background_runs", request.user)
            execution = services.tool_execute_async(tool=tool, arguments=arguments, actor=request.user)
            return Response(execution_result(execution), status=status.HTTP_202_ACCEPTED)
        execution = services.tool_execute(
            tool=tool, arguments=arguments, actor=request.user, timeout_cap=services.sync_wait_seconds()
        )
        return Response(execution_result(execution))

    @extend_schema(
        operation_id="tools_test", request=TestRequestSerializer, responses={200: TestReportSerializer}
    )
    @action(detail=True, methods=["post"])
    def test(self, request, *args, **kwargs):
        """Run the given case(s), or the tool's stored test cases, and check expectations.
        Test runs are recorded but do not count in the stats."""
        tool = self.get_object()
        data = TestRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        cases = data.validated_data.get("cases")
        if "arguments" in data.validated_data:
            cases = [
                {
                    "arguments": data.validated_data["arguments"],
                    "expect": data.validated_data.get("expect", {}),
                }
            ]
        if cases is not None:
            services.check_test_cases(cases, field="cases")
        elif not tool.test_cases:
            services.raise_no_test_cases()
        return Response(TestReportSerializer(tool_test(tool=tool, actor=request.user, cases=cases)).data)

    @extend_schema(operation_id="tools_validate", request=None, responses={200: ValidationReportSerializer})
    @action(detail=True, methods=["post"])
    def validate(self, request, *args, **kwargs):
        """Static and live checks; when all pass the tool becomes `validated`."""
        tool = self.get_object()
        checks = services.tool_validate(tool=tool, actor=request.user)
        report = {
            "valid": all(c.ok for c in checks),
            "status": tool.status,
            "version": tool.version,
            "checks": [{"name": c.name, "ok": c.ok, "message": c.message} for c in checks],
        }
        return Response(ValidationReportSerializer(report).data)

    @extend_schema(operation_id="tools_deploy", request=None, responses={200: ToolSerializer})
    @action(detail=True, methods=["post"])
    def deploy(self, request, *args, **kwargs):
        """Deploy a validated tool: agents and workflows may call only deployed tools (409 otherwise)."""
        tool = services.tool_deploy(tool=self.get_object(), actor=request.user)
        return Response(ToolSerializer(tool).data)

    @extend_schema(operation_id="tools_undeploy", request=None, responses={200: ToolSerializer})
    @action(detail=True, methods=["post"])
    def undeploy(self, request, *args, **kwargs):
        """Take the tool out of production (`disabled`); deploy brings it back."""
        tool = services.tool_undeploy(tool=self.get_object(), actor=request.user)
        return Response(ToolSerializer(tool).data)

    @extend_schema(
        operation_id="tools_stats",
        request=None,
        parameters=[OpenApiParameter("days", int, description="Window in days (1-365, default 30).")],
        responses={200: ToolStatsSerializer},
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def stats(self, request, *args, **kwargs):
        """Calls, success rate, p50/p95 duration, errors by kind and calls per day (tests excluded)."""
        tool = self.get_object()
        days = services.parse_days(request.query_params.get("days"))
        return Response(ToolStatsSerializer(selectors.tool_stats(tool=tool, days=days)).data)

    @extend_schema(
        operation_id="tools_categories", request=None, responses={200: CategoryCountSerializer(many=True)}
    )
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def categories(self, request):
        """Distinct categories of the tools you may see, with counts."""
        return Response(
            CategoryCountSerializer(selectors.category_counts(self.get_queryset()), many=True).data
        )

    @extend_schema(operation_id="tools_types", request=None, responses={200: ToolTypeSerializer(many=True)})
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def types(self, request):
        """Every tool type with its description and the JSON Schema of its config."""
        rows = [
            {"type": e.type, "label": e.label, "description": e.description, "config_schema": e.config_schema}
            for e in registry.types()
        ]
        return Response(ToolTypeSerializer(rows, many=True).data)

    @extend_schema(
        operation_id="tools_import_openapi",
        request=OpenAPIImportSerializer,
        responses={201: ToolSerializer(many=True)},
    )
    @action(
        detail=False, methods=["post"], url_path="import-openapi", filter_backends=[], pagination_class=None
    )
    def import_openapi(self, request):
        """Create one draft `http` tool per operation of an OpenAPI 3 document (all or none)."""
        data = OpenAPIImportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        from ..openapi_import import tools_import_openapi

        tools = tools_import_openapi(owner=request.user, **data.validated_data)
        return Response(ToolSerializer(tools, many=True).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="tools_import_mcp",
        request=MCPImportSerializer,
        responses={201: ToolSerializer(many=True)},
    )
    @action(detail=False, methods=["post"], url_path="import-mcp", filter_backends=[], pagination_class=None)
    def import_mcp(self, request):
        """Discover an MCP server's tools (tools/list) and create one draft `mcp` tool each."""
        require_feature("mcp", request.user)
        data = MCPImportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        from ..mcp_import import tools_import_from_mcp

        values = data.validated_data
        secret_id = values.get("headers_secret_id")
        tools = tools_import_from_mcp(
            owner=request.user,
            url=values["url"],
            headers_secret_id=str(secret_id) if secret_id else None,
            names=values.get("names"),
            category=values["category"],
        )
        return Response(ToolSerializer(tools, many=True).data, status=status.HTTP_201_CREATED)


class ToolExecutionViewSet(mixins.ListModelMixin, ChildRecordViewSet):
    """The executions you started, and every execution of the tools you own (admins: all)."""

    queryset = ToolExecution.objects.select_related("user")
    serializer_class = ToolExecutionSerializer
    filterset_class = ToolExecutionFilter
    ordering_fields = ["created_at", "duration_ms", "status"]
    visible_to = staticmethod(selectors.executions_visible_to)
