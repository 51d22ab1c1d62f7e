"""`POST /agents/{id}/interact` (sync, streamed as server-sent events, or background) and
`POST /agents/runs/{id}/cancel`, as mixins for the agent and run viewsets."""

import asyncio
import contextvars
import json
import logging
import queue
import threading

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import renderers, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from agentmesh.core.features import require_feature
from agentmesh.core.permissions import has_object_action
from agentmesh.core.serializers import StrictSerializer, representation

from ..models import AgentRun, RunStatus
from ..runs import run_cancel, run_execute, run_start
from .serializers import STOP_REASON_HELP

logger = logging.getLogger(__name__)


class EventStreamRenderer(renderers.BaseRenderer):
    """Lets clients ask for `text/event-stream` (DRF would answer 406); errors stay JSON text."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return json.dumps(data, cls=DjangoJSONEncoder).encode()


class InteractRequestSerializer(StrictSerializer):
    input = serializers.CharField(required=False, trim_whitespace=False, help_text="The user's message…")
    messages = serializers.ListField(
        child=serializers.DictField(), required=False, help_text='…or [{"role": "user", "content": "…"}].'
    )
    conversation_id = serializers.UUIDField(
        required=False, allow_null=True, help_text="Continue a conversation."
    )
    variables = serializers.DictField(required=False, default=dict, help_text="System prompt variables.")
    stream = serializers.BooleanField(
        required=False, default=False, help_text="Answer with server-sent events."
    )
    background = serializers.BooleanField(
        required=False, default=False, help_text="Answer 202; a worker runs it."
    )
    metadata = serializers.DictField(required=False, default=dict)

    def validate(self, attrs):
        if attrs.get("stream") and attrs.get("background"):
            raise serializers.ValidationError({"stream": ["stream and background exclude each other."]})
        return attrs


class RunMessageSerializer(StrictSerializer):
    seq = serializers.IntegerField()
    role = serializers.CharField()
    content = serializers.CharField(allow_null=True)
    tool_calls = serializers.JSONField(allow_null=True)
    tool_call_id = serializers.CharField(allow_blank=True)


class InteractResultSerializer(StrictSerializer):
    """A run as interact returns it: the outcome, the messages it added, usage and cost.
    (Fields declared by hand: this is on every interaction's hot path.)"""

    id = serializers.UUIDField(read_only=True)
    agent = serializers.UUIDField(source="agent_id", read_only=True, allow_null=True)
    version = serializers.IntegerField(source="agent_version_number", read_only=True, allow_null=True)
    conversation = serializers.UUIDField(source="conversation_id", read_only=True)
    status = serializers.ChoiceField(choices=RunStatus.choices, read_only=True)
    stop_reason = serializers.CharField(read_only=True, help_text=STOP_REASON_HELP)
    output = serializers.CharField(read_only=True)
    output_json = serializers.JSONField(read_only=True, allow_null=True)
    error = serializers.CharField(read_only=True)
    messages = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()
    cost_usd = serializers.DecimalField(max_digits=14, decimal_places=8, read_only=True)
    turns = serializers.IntegerField(read_only=True)
    tool_calls = serializers.IntegerField(read_only=True)
    duration_ms = serializers.FloatField(read_only=True, allow_null=True)
    background = serializers.BooleanField(read_only=True)
    trace_id = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    finished_at = serializers.DateTimeField(read_only=True, allow_null=True)

    @extend_schema_field(RunMessageSerializer(many=True))
    def get_messages(self, run) -> list[dict]:
        fields = RunMessageSerializer._declared_fields
        rows = getattr(run, "added_messages", None)  # executed in this request: no re-read
        if rows is None:
            return list(run.messages.order_by("seq").values(*fields))
        return [{name: getattr(row, name) for name in fields} for row in rows]

    def get_usage(self, run) -> dict:
        return {
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "total_tokens": run.input_tokens + run.output_tokens,
        }


interact_result = representation(InteractResultSerializer)


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, cls=DjangoJSONEncoder)}\n\n".encode()


def stream_run(run: AgentRun) -> StreamingHttpResponse:
    """Run in a thread, relay its events as SSE from an async generator (so an ASGI server
    sends each event as it happens), with a ping every AGENTS_STREAM_PING_SECONDS. A client
    that goes away cancels the run at its next limit check."""
    events: queue.Queue = queue.Queue()

    def emit(event: str, data: dict) -> None:
        events.put((event, data))

    def work() -> None:
        try:
            run_execute(run=run, emit=emit, stream=True, claimed=True)
        except Exception:
            logger.exception("streamed run %s crashed", run.pk)
            events.put(("run.failed", {"run_id": str(run.pk), "status": RunStatus.FAILED}))
        finally:
            events.put(None)
            connections.close_all()

    context = contextvars.copy_context()  # the request's trace: the run's spans are its children
    threading.Thread(target=context.run, args=(work,), daemon=True, name=f"run-{run.pk}").start()
    ping = settings.AGENTS_STREAM_PING_SECONDS

    async def body():
        try:
            while True:
                try:
                    item = await asyncio.to_thread(events.get, True, ping)
                except queue.Empty:
                    yield _sse("ping", {})
                    continue
                if item is None:
                    return
                yield _sse(*item)
        except (asyncio.CancelledError, GeneratorExit):
            await asyncio.to_thread(_cancel_quietly, run.pk)
            raise

    response = StreamingHttpResponse(body(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def _cancel_quietly(run_id) -> None:
    try:
        AgentRun.objects.filter(pk=run_id).exclude(status__in=[RunStatus.SUCCEEDED]).update(
            cancel_requested=True
        )
    finally:
        connections.close_all()


class InteractMixin:
    """The agent viewset's `interact` action (object action: use)."""

    @extend_schema(
        operation_id="agents_interact",
        request=InteractRequestSerializer,
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
        responses={
            200: InteractResultSerializer,
            202: InteractResultSerializer,
            (200, "text/event-stream"): OpenApiResponse(
                response=OpenApiTypes.STR,
                description="With stream=true: events run.created, message.delta, tool_call.started, "
                "tool_call.completed, run.completed | run.failed, and ping.",
            ),
        },
    )
    @action(detail=True, methods=["post"], renderer_classes=[renderers.JSONRenderer, EventStreamRenderer])
    def interact(self, request, *args, **kwargs):
        """Talk to the deployed agent. Only deployed agents interact (409 otherwise)."""
        agent = self.get_object()
        data = InteractRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if values["stream"]:
            require_feature("streaming", request.user)
        if values["background"]:
            require_feature("background_runs", request.user)
        run, created = run_start(
            agent=agent,
            user=request.user,
            input=values.get("input"),
            messages=values.get("messages"),
            conversation_id=values.get("conversation_id"),
            variables=values["variables"],
            metadata=values["metadata"],
            idempotency_key=request.headers.get("Idempotency-Key", ""),
            background=values["background"],
            claim=not values["background"],
        )
        if not created:  # a replay of the same Idempotency-Key: the first run, as it is now
            code = status.HTTP_202_ACCEPTED if not run.finished else status.HTTP_200_OK
            return Response(interact_result(run), status=code)
        if values["background"]:
            return Response(interact_result(run), status=status.HTTP_202_ACCEPTED)
        if values["stream"]:
            return stream_run(run)
        run = run_execute(run=run, claimed=True)
        return Response(interact_result(run))


class CancelMixin:
    """The run viewset's `cancel` action."""

    @extend_schema(operation_id="agents_runs_cancel", request=None, responses={200: InteractResultSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, *args, **kwargs):
        """Cancel a queued run now, or a running one at its next step (the run's user, the
        agent's owner or editors, and admins)."""
        run = self.get_object()
        allowed = run.user_id == request.user.pk or (
            run.agent is not None and has_object_action(request.user, run.agent, "change")
        )
        if not allowed:
            raise PermissionDenied("Only the run's user or the agent's editors may cancel it.")
        return Response(interact_result(run_cancel(run=run)))
