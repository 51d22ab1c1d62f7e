"""Webhooks (outbound, signed per Standard Webhooks), their deliveries, the event catalogue, and
inbound workflow triggers."""

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed, NotFound
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from agentmesh.core.exceptions import ServiceValidationError
from agentmesh.core.features import require_feature, runtime_setting
from agentmesh.core.permissions import has_object_action
from agentmesh.core.viewsets import ServiceBackedViewSet
from workflows.models import Workflow

from ..models import Webhook, WorkflowTrigger
from ..services import webhooks as services
from .webhooks_serializers import (
    EventTypeSerializer,
    TriggerFiredSerializer,
    WebhookCreatedSerializer,
    WebhookDeliverySerializer,
    WebhookSerializer,
    WorkflowTriggerCreatedSerializer,
    WorkflowTriggerSerializer,
)


@extend_schema_view(
    list=extend_schema(operation_id="integration_webhooks_list"),
    create=extend_schema(
        operation_id="integration_webhook_create", responses={201: WebhookCreatedSerializer}
    ),
    retrieve=extend_schema(operation_id="integration_webhooks_retrieve"),
    update=extend_schema(operation_id="integration_webhooks_update"),
    partial_update=extend_schema(operation_id="integration_webhooks_partial_update"),
    destroy=extend_schema(operation_id="integration_webhooks_destroy"),
)
class WebhookViewSet(ServiceBackedViewSet):
    """Webhooks: your events of the subscribed types, POSTed to a URL and signed per Standard Webhooks."""

    queryset = Webhook.objects.select_related("owner")
    serializer_class = WebhookSerializer
    filterset_fields = ["active"]
    search_fields = ["name", "url"]
    ordering_fields = ["name", "created_at", "updated_at"]
    object_actions = {"test": "change", "deliveries": "view", "redeliver": "change"}

    def create(self, request, *args, **kwargs):
        """Create a webhook. The answer carries its whsec_ secret, this once."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        webhook, secret = services.webhook_create(owner=request.user, **serializer.validated_data)
        webhook.secret = secret
        return Response(WebhookCreatedSerializer(webhook).data, status=status.HTTP_201_CREATED)

    def update_object(self, instance, validated_data):
        return services.webhook_update(webhook=instance, actor=self.request.user, **validated_data)

    @extend_schema(
        operation_id="integration_webhooks_test", request=None, responses={200: WebhookDeliverySerializer}
    )
    def test(self, request, *args, **kwargs):
        """Send a signed `webhook.test` message now (one attempt) and answer the recorded delivery."""
        delivery = services.webhook_test(webhook=self.get_object(), actor=request.user)
        return Response(WebhookDeliverySerializer(delivery).data)

    @extend_schema(
        operation_id="integration_webhooks_deliveries_list",
        request=None,
        responses={200: WebhookDeliverySerializer(many=True)},
    )
    def deliveries(self, request, *args, **kwargs):
        """Every delivery attempt of this webhook, newest first."""
        queryset = self.get_object().deliveries.order_by("-created_at")
        page = self.paginate_queryset(queryset)
        if page is not None:
            return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)
        return Response(WebhookDeliverySerializer(queryset, many=True).data)

    @extend_schema(
        operation_id="integration_webhooks_deliveries_redeliver",
        request=None,
        responses={202: WebhookDeliverySerializer},
    )
    def redeliver(self, request, *args, delivery_id=None, **kwargs):
        """Send a recorded message again (same webhook-id) as a new, queued first attempt."""
        delivery = get_object_or_404(self.get_object().deliveries, pk=delivery_id)
        again = services.webhook_redeliver(delivery=delivery, actor=request.user)
        return Response(WebhookDeliverySerializer(again).data, status=status.HTTP_202_ACCEPTED)


class WebhookEventTypesView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="integration_webhook_event_types",
        request=None,
        responses={200: EventTypeSerializer(many=True)},
    )
    def get(self, request):
        """The event types a webhook may subscribe to."""
        items = [{"type": t, "description": d} for t, d in services.EVENT_CATALOGUE.items()]
        return Response(EventTypeSerializer(items, many=True).data)


@extend_schema_view(
    list=extend_schema(operation_id="integration_triggers_list"),
    create=extend_schema(
        operation_id="integration_triggers_create", responses={201: WorkflowTriggerCreatedSerializer}
    ),
    retrieve=extend_schema(operation_id="integration_triggers_retrieve"),
    destroy=extend_schema(operation_id="integration_triggers_destroy"),
)
class WorkflowTriggerViewSet(ServiceBackedViewSet):
    """Inbound triggers: a secret URL that starts an execution of a workflow."""

    queryset = WorkflowTrigger.objects.select_related("owner", "workflow")
    serializer_class = WorkflowTriggerSerializer
    filterset_fields = ["workflow", "active"]
    search_fields = ["name"]
    ordering_fields = ["name", "created_at", "last_triggered_at"]
    http_method_names = ["get", "post", "delete", "head", "options"]

    def create(self, request, *args, **kwargs):
        """Create a trigger URL for a workflow you may change; the token and secret are shown this once."""
        require_feature("triggers", request.user)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        workflow: Workflow = data["workflow"]
        if not has_object_action(request.user, workflow, "view"):
            raise ServiceValidationError("No such workflow.", field="workflow", code="does_not_exist")
        if not has_object_action(request.user, workflow, "change"):
            raise ServiceValidationError(
                "You may not change this workflow.", field="workflow", code="permission"
            )
        trigger, token, secret = services.trigger_create(
            workflow=workflow, actor=request.user, name=data["name"], signed=data["signed"]
        )
        trigger.token, trigger.secret = token, secret
        trigger.url = request.build_absolute_uri(f"/api/v1/integration/hooks/{token}")
        return Response(WorkflowTriggerCreatedSerializer(trigger).data, status=status.HTTP_201_CREATED)


class TriggerThrottle(AnonRateThrottle):
    """Per client address, whether or not a token is valid."""

    scope = "trigger"

    def get_rate(self):
        return runtime_setting("TRIGGER_THROTTLE_RATE")  # GET/PUT /system/config

    def get_cache_key(self, request, view):
        from agentmesh.core.throttling import client_address

        return self.cache_format % {"scope": self.scope, "ident": client_address(request)}


class TriggerHookView(APIView):
    """The inbound trigger endpoint: the token in the path authenticates (no JWT)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [TriggerThrottle]

    def get_authenticate_header(self, request):
        return 'Webhook-Signature realm="api"'  # makes a refused signature a 401, not a 403

    @extend_schema(
        operation_id="integration_hooks_fire",
        request=OpenApiTypes.OBJECT,
        responses={202: TriggerFiredSerializer},
    )
    def post(self, request, token: str):
        """Start an execution of the trigger's workflow with the JSON body as its inputs.

        No JWT: the token in the path authenticates. A trigger with a secret requires a Standard
        Webhooks signature (webhook-id, webhook-timestamp, webhook-signature), else 401."""
        require_feature("triggers")
        body = request.body
        trigger = services.trigger_by_token(token)
        if trigger is None:
            raise NotFound("No such trigger.")
        try:
            execution, created = services.trigger_fire(trigger=trigger, body=body, headers=request.headers)
        except services.SignatureRejected as exc:
            raise AuthenticationFailed(str(exc)) from exc
        return Response(
            TriggerFiredSerializer(
                {"execution_id": execution.pk, "status": execution.status, "created": created}
            ).data,
            status=status.HTTP_202_ACCEPTED,
        )
