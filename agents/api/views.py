from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.response import Response

from agentmesh.core.viewsets import ChildRecordViewSet, ServiceBackedViewSet
from masterdata.models import Constraint, Skill
from tools.models import Tool

from .. import selectors, services
from ..filters import AgentFilter, AgentRunFilter
from ..models import Agent, AgentRun, AgentRunStep, AgentVersion, Conversation
from .interact import CancelMixin, InteractMixin
from .serializers import (
    AgentRunDetailSerializer,
    AgentRunSerializer,
    AgentSerializer,
    AgentStatsSerializer,
    AgentVersionSerializer,
    ConversationSerializer,
    DeployFailedSerializer,
    DeployResultSerializer,
    MessageSerializer,
)


class AgentViewSet(InteractMixin, ServiceBackedViewSet):
    queryset = Agent.objects.select_related("owner", "deployed_version").defer("deployed_version__snapshot")
    serializer_class = AgentSerializer
    filterset_class = AgentFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "status", "deployed_at", "created_at", "updated_at"]
    object_actions = {
        "interact": "use",
        "deploy": "change",
        "undeploy": "change",
        "stats": "view",
        "versions": "view",
        "conversations": "use",
    }

    # Actions that never read the agent's tools, skills, constraints or versions.
    actions_without_relations = {"interact", "stats", "versions", "conversations"}

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action in self.actions_without_relations:
            return queryset
        return queryset.prefetch_related(
            Prefetch("tools", queryset=Tool.objects.only("pk")),
            Prefetch("skills", queryset=Skill.objects.only("pk")),
            Prefetch("constraints", queryset=Constraint.objects.only("pk")),
            Prefetch(
                "versions", queryset=AgentVersion.objects.only("pk", "agent_id", "version", "created_at")
            ),
        )

    def create_object(self, validated_data):
        return services.agent_create(owner=self.request.user, **validated_data)

    def update_object(self, instance, validated_data):
        return services.agent_update(agent=instance, **validated_data)

    def perform_destroy(self, instance):
        services.agent_delete(agent=instance)

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if isinstance(exc, services.DeployFailed) and isinstance(response.data, dict):
            response.data["detail"] = exc.summary
            response.data["checks"] = exc.checks
        return response

    @extend_schema(
        operation_id="agents_deploy",
        request=None,
        responses={200: DeployResultSerializer, 400: DeployFailedSerializer},
    )
    @action(detail=True, methods=["post"])
    def deploy(self, request, *args, **kwargs):
        """Check the agent (model, API key, tools, system prompt, constraints, memory) and, when
        every check passes, freeze it into a new immutable version that runs use. A failed check
        is a 400 listing the report; the agent is left as it was."""
        version, checks = services.agent_deploy(agent=self.get_object(), actor=request.user)
        if version is None:
            raise services.DeployFailed(checks)
        result = {"version": version.version, "status": "deployed", "checks": [c.as_dict() for c in checks]}
        return Response(DeployResultSerializer(result).data)

    @extend_schema(operation_id="agents_undeploy", request=None, responses={200: AgentSerializer})
    @action(detail=True, methods=["post"])
    def undeploy(self, request, *args, **kwargs):
        """Refuse new interactions (running runs finish); deploy brings the agent back."""
        agent = services.agent_undeploy(agent=self.get_object(), actor=request.user)
        return Response(AgentSerializer(self.get_queryset().get(pk=agent.pk)).data)

    @extend_schema(
        operation_id="agents_stats",
        request=None,
        parameters=[OpenApiParameter("days", int, description="Window in days (1-365, default 30).")],
        responses={200: AgentStatsSerializer},
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def stats(self, request, *args, **kwargs):
        """Runs by status and stop reason, p50/p95 duration, tokens, cost, tool calls, runs per day."""
        agent = self.get_object()
        days = services.parse_days(request.query_params.get("days"))
        return Response(AgentStatsSerializer(selectors.agent_stats(agent=agent, days=days)).data)

    @extend_schema(
        operation_id="agents_versions_list", request=None, responses={200: AgentVersionSerializer(many=True)}
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def versions(self, request, *args, **kwargs):
        """The deployed versions with their snapshots, newest first."""
        agent = self.get_object()
        versions = AgentVersion.objects.filter(agent=agent).select_related("created_by").order_by("-version")
        page = self.paginate_queryset(versions)
        return self.get_paginated_response(AgentVersionSerializer(page, many=True).data)

    @extend_schema(
        operation_id="agents_conversations_list",
        request=None,
        responses={200: ConversationSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def conversations(self, request, *args, **kwargs):
        """Your conversations with this agent (the owner and admins see everyone's), newest first."""
        agent = self.get_object()
        conversations = (
            selectors.conversations_visible_to(request.user)
            .filter(agent=agent)
            .select_related("user")
            .order_by("-created_at")
        )
        page = self.paginate_queryset(conversations)
        return self.get_paginated_response(ConversationSerializer(page, many=True).data)


class RunViewSet(CancelMixin, mixins.ListModelMixin, ChildRecordViewSet):
    """The runs you started, and every run of the agents you own (admins: all)."""

    queryset = AgentRun.objects.select_related("user")
    serializer_class = AgentRunSerializer
    filterset_class = AgentRunFilter
    ordering_fields = ["created_at", "duration_ms", "cost_usd", "status"]
    visible_to = staticmethod(selectors.runs_visible_to)

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action == "retrieve":
            queryset = queryset.prefetch_related(
                Prefetch("steps", queryset=AgentRunStep.objects.order_by("seq"))
            )
        return queryset

    def get_serializer_class(self):
        return AgentRunDetailSerializer if self.action == "retrieve" else AgentRunSerializer


class ConversationViewSet(ChildRecordViewSet):
    """A conversation you had with an agent (owners and admins see all of their agents')."""

    queryset = Conversation.objects.select_related("user")
    serializer_class = ConversationSerializer
    visible_to = staticmethod(selectors.conversations_visible_to)

    @extend_schema(
        operation_id="agents_conversations_messages_list",
        request=None,
        responses={200: MessageSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def messages(self, request, *args, **kwargs):
        """The conversation's messages in order (by seq)."""
        conversation = self.get_object()
        page = self.paginate_queryset(conversation.messages.order_by("seq"))
        return self.get_paginated_response(MessageSerializer(page, many=True).data)
