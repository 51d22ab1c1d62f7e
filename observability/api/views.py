"""Observability API: events, traces, logs, metrics, health, alerts and alert rules.

Visibility: admins see everything; other users see their own events (actor), traces (root
span user), log records (request user), alerts (owner) and metrics scoped to themselves.
"""

from django.conf import settings
from django.http import HttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import (
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import ErrorDetail, NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.authentication import JWTAuthentication

from agentmesh.core.permissions import is_admin
from agentmesh.core.schema import OneOrMany
from agentmesh.core.viewsets import OwnedModelViewSet

from .. import metrics as prom
from .. import selectors, services
from ..filters import AlertFilter, AlertRuleFilter, EventFilter, LogFilter, TraceFilter
from ..models import Alert, AlertRule, LogRecord, ObservabilityEvent, Span
from .serializers import (
    AlertCreateSerializer,
    AlertRuleSerializer,
    AlertSerializer,
    EventBatchResultSerializer,
    EventInSerializer,
    EventSerializer,
    LogRecordSerializer,
    MetricsQuerySerializer,
    ObservabilityHealthSerializer,
    ObservabilityMetricsSerializer,
    TraceDetailSerializer,
    TraceSerializer,
    clean_event_item,
)


class NewestFirstCursorPagination(CursorPagination):
    """Cursor pagination, newest first; stable while new rows arrive."""

    ordering = ("-timestamp", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = settings.API_MAX_PAGE_SIZE


class TraceCursorPagination(NewestFirstCursorPagination):
    ordering = ("-start_time", "-span_id")


class ReadOnlyFilters:
    filter_backends = [DjangoFilterBackend]


@extend_schema_view(
    list=extend_schema(
        operation_id="observability_events_list",
        summary="List events",
        description="Events (including the audit trail), newest first, cursor-paginated. `type` filters "
        "by prefix. Admins see every event, other users the events they are the actor of.",
    )
)
class EventViewSet(ReadOnlyFilters, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = EventSerializer
    pagination_class = NewestFirstCursorPagination
    filterset_class = EventFilter
    permission_classes = [IsAuthenticated]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ObservabilityEvent.objects.none()
        return selectors.events_visible(self.request.user).select_related("actor")

    @extend_schema(
        operation_id="observability_events_create",
        summary="Create event(s)",
        description="One event (an object; answers 201 with the event) or a batch (a list of up to "
        "1,000; answers 201 when all were recorded, 207 with per-item results when some were invalid — "
        "the valid ones are recorded). The actor is the requesting user.",
        request=OneOrMany(EventInSerializer, max_items=services.EVENT_BATCH_MAX),
        responses={
            201: PolymorphicProxySerializer(
                component_name="EventCreated",
                serializers=[EventSerializer, EventBatchResultSerializer],
                resource_type_field_name=None,
            ),
            207: EventBatchResultSerializer,
        },
    )
    def create(self, request, *args, **kwargs):
        data = request.data
        if isinstance(data, dict):
            clean, errors = clean_event_item(data)
            if errors:
                raise ValidationError(
                    {
                        e["field"] or "non_field_errors": [ErrorDetail(e["message"], code=e["code"])]
                        for e in errors
                    }
                )
            (event_id,) = services.events_ingest(items=[clean], actor=request.user)
            event = ObservabilityEvent.objects.select_related("actor").get(pk=event_id)
            return Response(EventSerializer(event).data, status=status.HTTP_201_CREATED)
        if not isinstance(data, list) or not data:
            raise ValidationError({"events": ["Send an event object or a non-empty list of events."]})
        services.require_batch_size(data)
        valid, results = [], []
        for index, item in enumerate(data):
            clean, errors = clean_event_item(item)
            if errors:
                results.append({"index": index, "status": 400, "errors": errors})
            else:
                valid.append((index, clean))
        ids = services.events_ingest(items=[c for _, c in valid], actor=request.user) if valid else []
        results.extend(
            {"index": index, "status": 201, "id": str(i)} for (index, _), i in zip(valid, ids, strict=True)
        )
        results.sort(key=lambda r: r["index"])
        failed = len(data) - len(ids)
        body = {"created": len(ids), "failed": failed, "results": results}
        return Response(body, status=status.HTTP_207_MULTI_STATUS if failed else status.HTTP_201_CREATED)


_TRACE_ID = OpenApiParameter("trace_id", str, OpenApiParameter.PATH, description="32 hex digits.")


@extend_schema_view(
    list=extend_schema(
        operation_id="observability_traces_list",
        summary="List traces",
        description="One row per trace (its root span) with duration, status, span/error counts, "
        "total tokens and cost; newest first.",
    ),
    retrieve=extend_schema(
        operation_id="observability_traces_retrieve",
        summary="Trace span tree",
        parameters=[_TRACE_ID],
        responses={200: TraceDetailSerializer},
    ),
)
class TraceViewSet(ReadOnlyFilters, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = TraceSerializer
    pagination_class = TraceCursorPagination
    filterset_class = TraceFilter
    permission_classes = [IsAuthenticated]
    lookup_field = "trace_id"
    lookup_value_regex = "[0-9a-f]{32}"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Span.objects.none()
        return selectors.traces_visible(self.request.user)

    def retrieve(self, request, trace_id=None):
        spans = selectors.trace_spans(user=request.user, trace_id=trace_id)
        if spans is None:
            raise NotFound()
        body = {"trace_id": trace_id, "root_span_id": spans[0].span_id, "spans": spans}
        return Response(TraceDetailSerializer(body).data)


@extend_schema_view(
    list=extend_schema(
        operation_id="observability_logs_list",
        summary="Get logs",
        description="Stored log records (at or above OBSERVABILITY_LOG_DB_LEVEL), newest first. "
        "`level` is a minimum level. Admins see all, other users records of their own requests.",
    )
)
class LogViewSet(ReadOnlyFilters, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = LogRecordSerializer
    pagination_class = NewestFirstCursorPagination
    filterset_class = LogFilter
    permission_classes = [IsAuthenticated]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return LogRecord.objects.none()
        return selectors.logs_visible(self.request.user)


class MetricsView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="observability_metrics",
        summary="Get metrics",
        description="Aggregates over `window`, bucketed by `bucket`: requests, errors, latency "
        "percentiles, runs by kind and status, LLM tokens and cost by model/agent/user, events by "
        "level. Computed in the database and cached briefly. Admins get everything, others their own.",
        parameters=[MetricsQuerySerializer],
        responses={200: ObservabilityMetricsSerializer},
    )
    def get(self, request):
        query = MetricsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        summary = selectors.metrics_summary(user=request.user, **query.validated_data)
        return Response(ObservabilityMetricsSerializer(summary).data)


class HealthView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="observability_health",
        summary="Health check",
        description="The observability pipeline: recording lag, log sink, last alert evaluation, "
        "last retention run. `status` is `degraded` when something is wrong.",
        responses={200: ObservabilityHealthSerializer},
    )
    def get(self, request):
        return Response(ObservabilityHealthSerializer(selectors.pipeline_health()).data)


@extend_schema_view(
    list=extend_schema(operation_id="observability_alerts_list", summary="List alerts"),
    retrieve=extend_schema(operation_id="observability_alerts_retrieve", summary="Get an alert"),
)
class AlertViewSet(
    ReadOnlyFilters, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Alerts raised by rules or by hand. Firing → acknowledged → resolved."""

    serializer_class = AlertSerializer
    filterset_class = AlertFilter
    permission_classes = [IsAuthenticated]
    lookup_value_converter = "uuid"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Alert.objects.none()
        return selectors.alerts_visible(self.request.user)

    @extend_schema(
        operation_id="observability_alerts_create",
        summary="Create alert",
        description="Raise a manual alert (rules are created at `/alert-rules` and raise their own). "
        "With `dedup_key`, an open alert with the same key is returned (200) with `occurrences` "
        "incremented instead of a new one (201).",
        request=AlertCreateSerializer,
        responses={201: AlertSerializer, 200: AlertSerializer},
    )
    def create(self, request):
        data = AlertCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        alert, created = services.alert_create_manual(owner=request.user, **data.validated_data)
        return Response(
            AlertSerializer(alert).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    @extend_schema(
        operation_id="observability_alerts_acknowledge", request=None, responses={200: AlertSerializer}
    )
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        """Acknowledge a firing alert (409 if it is resolved)."""
        alert = services.alert_acknowledge(alert=self.get_object(), user=request.user)
        return Response(AlertSerializer(alert).data)

    @extend_schema(
        operation_id="observability_alerts_resolve", request=None, responses={200: AlertSerializer}
    )
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        """Resolve an alert (a rule's alert also resolves by itself when the condition clears)."""
        alert = services.alert_resolve(alert=self.get_object(), user=request.user)
        return Response(AlertSerializer(alert).data)


@extend_schema_view(
    list=extend_schema(operation_id="observability_alert_rules_list"),
    create=extend_schema(operation_id="observability_alert_rules_create"),
    retrieve=extend_schema(operation_id="observability_alert_rules_retrieve"),
    update=extend_schema(operation_id="observability_alert_rules_update"),
    partial_update=extend_schema(operation_id="observability_alert_rules_partial_update"),
    destroy=extend_schema(operation_id="observability_alert_rules_destroy"),
)
class AlertRuleViewSet(OwnedModelViewSet):
    """Alert rules: metric(aggregation over window) comparison threshold; evaluated every minute."""

    queryset = AlertRule.objects.select_related("owner")
    serializer_class = AlertRuleSerializer
    filterset_class = AlertRuleFilter
    search_fields = ["name"]
    ordering_fields = ["name", "created_at", "severity"]


# --- Prometheus exposition at the site root ----------------------------------------------
class MetricsTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <METRICS_TOKEN>` for scrapers (only when the setting is set)."""

    def authenticate(self, request):
        import hmac

        token = settings.METRICS_TOKEN
        header = request.headers.get("Authorization", "")
        if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip(), token):
            from django.contrib.auth.models import AnonymousUser

            return AnonymousUser(), "metrics-token"
        return None

    def authenticate_header(self, request):
        return "Bearer"


class CanScrapeMetrics(BasePermission):
    def has_permission(self, request, view) -> bool:
        return request.auth == "metrics-token" or is_admin(request.user)


class PrometheusMetricsView(APIView):
    """Prometheus text exposition of counters summed over every process (admin or token)."""

    authentication_classes = [MetricsTokenAuthentication, JWTAuthentication, SessionAuthentication]
    permission_classes = [CanScrapeMetrics]
    throttle_classes = []

    @extend_schema(exclude=True)
    def get(self, request):
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        return HttpResponse(prom.exposition(), content_type=CONTENT_TYPE_LATEST)
