import asyncio
import json
import time

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections
from django.db.models import Prefetch
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, renderers, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from agentmesh.core.features import feature_required, require_feature
from agentmesh.core.permissions import has_object_action
from agentmesh.core.viewsets import ChildRecordViewSet, ServiceBackedViewSet
from agents.api.interact import EventStreamRenderer

from .. import selectors, services
from ..filters import WorkflowExecutionFilter, WorkflowFilter
from ..models import StepExecution, Workflow, WorkflowExecution, WorkflowVersion
from .serializers import (
    DecisionRequestSerializer,
    WorkflowExecuteRequestSerializer,
    WorkflowExecutionDetailSerializer,
    WorkflowExecutionSerializer,
    WorkflowSerializer,
    WorkflowStatsSerializer,
    WorkflowVersionSerializer,
)

IDEMPOTENCY_KEY = OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)


class WorkflowViewSet(ServiceBackedViewSet):
    queryset = Workflow.objects.select_related("owner")
    serializer_class = WorkflowSerializer
    filterset_class = WorkflowFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "status", "version", "created_at", "updated_at"]
    object_actions = {"execute": "use", "executions": "view", "stats": "view", "versions": "view"}

    def create_object(self, validated_data):
        return services.workflow_create(owner=self.request.user, actor=self.request.user, **validated_data)

    def update_object(self, instance, validated_data):
        return services.workflow_update(workflow=instance, actor=self.request.user, **validated_data)

    def perform_destroy(self, instance):
        services.workflow_delete(workflow=instance)

    @extend_schema(
        operation_id="workflows_versions_list",
        request=None,
        responses={200: WorkflowVersionSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def versions(self, request, *args, **kwargs):
        """Every saved version of the definition, newest first (executions pin one)."""
        workflow = self.get_object()
        versions = (
            WorkflowVersion.objects.filter(workflow=workflow)
            .select_related("created_by")
            .order_by("-version")
        )
        page = self.paginate_queryset(versions)
        return self.get_paginated_response(WorkflowVersionSerializer(page, many=True).data)

    @extend_schema(
        operation_id="workflows_execute",
        request=WorkflowExecuteRequestSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: WorkflowExecutionDetailSerializer, 202: WorkflowExecutionDetailSerializer},
    )
    @action(detail=True, methods=["post"])
    def execute(self, request, *args, **kwargs):
        """Start an execution. Inputs are checked against the workflow's input schema (400 names
        the field). `mode: async` (default) answers 202 at once; `sync` waits for the end (200)
        at most WORKFLOWS_SYNC_MAX_SECONDS, then answers 202 with the execution as it is. The
        same Idempotency-Key returns the first execution instead of starting another."""
        workflow = self.get_object()
        data = WorkflowExecuteRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if values["mode"] == "async":
            require_feature("background_runs", request.user)
        execution, _ = services.workflow_execute(
            workflow=workflow,
            user=request.user,
            inputs=values["inputs"],
            version=values.get("version"),
            idempotency_key=request.headers.get("Idempotency-Key", ""),
        )
        if values["mode"] == "sync":
            execution = services.execution_wait(
                execution=execution, timeout=values.get("wait_seconds", float("inf"))
            )
        # async: 202 even when the run has already ended (pure nodes only are evaluated in place)
        code = (
            status.HTTP_200_OK
            if values["mode"] == "sync" and execution.finished
            else status.HTTP_202_ACCEPTED
        )
        return Response(WorkflowExecutionDetailSerializer(_detail(execution)).data, status=code)

    @extend_schema(
        operation_id="workflows_executions_of_workflow",
        request=None,
        parameters=[
            OpenApiParameter("status", str, description="Only executions with this status."),
            OpenApiParameter("version", int, description="Only executions of this version."),
            OpenApiParameter("since", OpenApiTypes.DATETIME, description="Created at or after (ISO 8601)."),
            OpenApiParameter("until", OpenApiTypes.DATETIME, description="Created before (ISO 8601)."),
        ],
        responses={200: WorkflowExecutionSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], url_path="executions", filter_backends=[])
    def executions(self, request, *args, **kwargs):
        """Executions of this workflow you may see (yours; the owner and admins see all), newest
        first (filters: status, version, since, until)."""
        workflow = self.get_object()
        executions = selectors.executions_visible_to(
            request.user, WorkflowExecution.objects.filter(workflow=workflow).select_related("user")
        )
        executions = WorkflowExecutionFilter(request.query_params, queryset=executions, request=request)
        if not executions.is_valid():
            from rest_framework.exceptions import ValidationError

            raise ValidationError(executions.errors)
        page = self.paginate_queryset(executions.qs.order_by("-created_at"))
        return self.get_paginated_response(WorkflowExecutionSerializer(page, many=True).data)

    @extend_schema(
        operation_id="workflows_stats",
        request=None,
        parameters=[OpenApiParameter("days", int, description="Window in days (1-365, default 30).")],
        responses={200: WorkflowStatsSerializer},
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def stats(self, request, *args, **kwargs):
        """Executions by status, p50/p95 duration, step failure hot spots, tokens and cost."""
        workflow = self.get_object()
        days = services.parse_days(request.query_params.get("days"))
        return Response(WorkflowStatsSerializer(selectors.workflow_stats(workflow=workflow, days=days)).data)


def _detail(execution: WorkflowExecution) -> WorkflowExecution:
    return (
        WorkflowExecution.objects.select_related("user")
        .prefetch_related(Prefetch("steps", queryset=StepExecution.objects.order_by("created_at", "attempt")))
        .get(pk=execution.pk)
    )


class WorkflowExecutionViewSet(mixins.ListModelMixin, ChildRecordViewSet):
    """The executions you started, and every execution of the workflows you own (admins: all)."""

    queryset = WorkflowExecution.objects.select_related("user")
    serializer_class = WorkflowExecutionSerializer
    filterset_class = WorkflowExecutionFilter
    ordering_fields = ["created_at", "duration_ms", "cost_usd", "status"]
    visible_to = staticmethod(selectors.executions_visible_to)

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action != "list":
            queryset = queryset.prefetch_related(
                Prefetch("steps", queryset=StepExecution.objects.order_by("created_at", "attempt"))
            )
        return queryset

    def get_serializer_class(self):
        return WorkflowExecutionSerializer if self.action == "list" else WorkflowExecutionDetailSerializer

    def _controlled(self, action: str = "change") -> WorkflowExecution:
        """The execution, if the user started it or may `action` its workflow."""
        execution = self.get_object()
        user = self.request.user
        allowed = execution.user_id == user.pk or (
            execution.workflow is not None and has_object_action(user, execution.workflow, action)
        )
        if not allowed:
            raise PermissionDenied("Only the execution's user or the workflow's editors may do this.")
        return execution

    def _answer(self, execution: WorkflowExecution, code=status.HTTP_200_OK) -> Response:
        return Response(WorkflowExecutionDetailSerializer(_detail(execution)).data, status=code)

    @extend_schema(
        operation_id="workflows_executions_cancel",
        request=None,
        responses={200: WorkflowExecutionDetailSerializer},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, *args, **kwargs):
        """Cancel a queued, running or waiting execution (409 once it has ended). Steps already
        running finish, but their results no longer advance the run."""
        execution = services.execution_cancel(execution=self._controlled(), actor=request.user)
        return self._answer(execution)

    @extend_schema(
        operation_id="workflows_executions_approve",
        request=DecisionRequestSerializer,
        responses={200: WorkflowExecutionDetailSerializer},
    )
    @action(detail=True, methods=["post"])
    def approve(self, request, *args, **kwargs):
        """Approve the waiting approval step; the run goes on."""
        return self._decide(request, approve=True)

    @extend_schema(
        operation_id="workflows_executions_reject",
        request=DecisionRequestSerializer,
        responses={200: WorkflowExecutionDetailSerializer},
    )
    @action(detail=True, methods=["post"])
    def reject(self, request, *args, **kwargs):
        """Reject the waiting approval step: it fails (its on_error decides what follows)."""
        return self._decide(request, approve=False)

    def _decide(self, request, *, approve: bool) -> Response:
        execution = self._controlled()
        data = DecisionRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        execution = services.execution_decide(
            execution=execution,
            actor=request.user,
            approve=approve,
            comment=data.validated_data["comment"],
            node_id=data.validated_data["node_id"],
        )
        return self._answer(execution)

    @extend_schema(
        operation_id="workflows_executions_retry",
        request=None,
        responses={202: WorkflowExecutionDetailSerializer},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request, *args, **kwargs):
        """Start a new execution that reuses the succeeded steps' outputs and runs again from the
        failed ones (failed, timed out or cancelled executions only; 409 otherwise)."""
        execution = self._controlled("use")
        retry = services.execution_retry(execution=execution, actor=request.user)
        return self._answer(retry, status.HTTP_202_ACCEPTED)

    @extend_schema(
        operation_id="workflows_executions_events",
        request=None,
        parameters=[OpenApiParameter("Last-Event-ID", str, OpenApiParameter.HEADER, required=False)],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                response=OpenApiTypes.STR,
                description="Events execution.started, step.retried, step.started, step.waiting, "
                "step.finished, execution.finished (then the stream ends), and ping comments.",
            )
        },
    )
    @action(detail=True, methods=["get"], renderer_classes=[renderers.JSONRenderer, EventStreamRenderer])
    @feature_required("streaming")
    def events(self, request, *args, **kwargs):
        """Server-sent events of the execution as it runs. Each event has an id: re-attach with
        `Last-Event-ID` to receive only the events after it. The stream ends after
        execution.finished."""
        execution = self.get_object()
        return stream_events(execution.pk, request.headers.get("Last-Event-ID", ""))


def _sse(event: dict) -> bytes:
    data = json.dumps(event["data"], cls=DjangoJSONEncoder)
    return f"id: {event['id']}\nevent: {event['event']}\ndata: {data}\n\n".encode()


def _poll(execution_id, after: str):
    try:
        return selectors.execution_events(execution_id=execution_id, after=after)
    finally:
        connections.close_all()  # this worker thread's connection


def stream_events(execution_id, after: str) -> StreamingHttpResponse:
    """Poll the execution's rows and relay new events from an async generator (an ASGI server
    sends each as it comes), with a ping comment every AGENTS_STREAM_PING_SECONDS; at most
    WORKFLOWS_EVENTS_MAX_SECONDS per connection (the client re-attaches with Last-Event-ID)."""
    ping = settings.AGENTS_STREAM_PING_SECONDS
    limit = settings.WORKFLOWS_EVENTS_MAX_SECONDS

    async def body():
        last, started, pinged = after, time.monotonic(), time.monotonic()
        while time.monotonic() - started < limit:
            events, finished = await asyncio.to_thread(_poll, execution_id, last)
            for event in events:
                last = event["id"]
                yield _sse(event)
            if finished:
                return
            if time.monotonic() - pinged >= ping:
                pinged = time.monotonic()
                yield b": ping\n\n"
            await asyncio.sleep(0.25)

    response = StreamingHttpResponse(body(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
