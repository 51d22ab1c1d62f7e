"""Cross-domain flows: agent from template, agent + workflow deploy, batch creates, status."""

import uuid

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from agentmesh.core.exceptions import flatten_errors
from agentmesh.core.permissions import has_object_action
from agents.models import Agent
from agents.services import DeployFailed
from observability.api.serializers import EventBatchResultSerializer
from templates_app.models import Template
from templates_app.selectors import template_allows
from workflows.models import Workflow

from ..services import flows as services
from ..status import integration_status
from .flows_serializers import (
    AgentFromTemplateResultSerializer,
    AgentFromTemplateSerializer,
    BatchCreateSerializer,
    DeployAgentWorkflowResultSerializer,
    DeployAgentWorkflowSerializer,
    FlowProblemSerializer,
    IntegrationStatusSerializer,
)


class _FlowView(APIView):
    permission_classes = [IsAuthenticated]
    may_not_exist = True  # a template or an id the caller may not see is a 404

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if isinstance(exc, DeployFailed) and isinstance(response.data, dict):
            response.data["detail"] = exc.summary
            response.data["checks"] = exc.checks
        return response


def _deploy_report(agent: Agent, checks: list) -> dict:
    return {
        "version": agent.deployed_version.version,
        "status": agent.status,
        "checks": [c.as_dict() if hasattr(c, "as_dict") else c for c in checks],
    }


def _fresh_agent(agent: Agent) -> Agent:
    return Agent.objects.select_related("owner", "deployed_version").get(pk=agent.pk)


class AgentFromTemplateView(_FlowView):
    @extend_schema(
        operation_id="integration_agent_from_template",
        summary="Create an agent from a template",
        request=AgentFromTemplateSerializer,
        responses={201: AgentFromTemplateResultSerializer, 400: FlowProblemSerializer},
    )
    def post(self, request):
        """Instantiate a template of kind agent (a bundle: 400, use its instantiate) with
        `params` and an optional `name`; `deploy` also deploys it (a failed check: 400 with the
        report, nothing created). Another user's unshared template is a 404."""
        data = AgentFromTemplateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        template = Template.objects.filter(pk=fields.pop("template")).first()
        if template is None or not template_allows(request.user, template, "view"):
            raise Http404
        if not template_allows(request.user, template, "use"):
            raise PermissionDenied("You may not use this template.")
        agent, checks = services.agent_from_template(template=template, actor=request.user, **fields)
        result = {"agent": _fresh_agent(agent), "deploy": _deploy_report(agent, checks) if checks else None}
        return Response(AgentFromTemplateResultSerializer(result).data, status=status.HTTP_201_CREATED)


def _changeable(model, value, user, field: str):
    try:
        pk = uuid.UUID(str(value))
    except ValueError:
        raise ValidationError({field: ["An id or an object."]}) from None
    obj = model.objects.filter(pk=pk).first()
    if obj is None or not has_object_action(user, obj, "change"):
        raise Http404
    return obj


def _object_or_data(model, value, user, field: str) -> tuple:
    """(existing object or None, fields to create/update)."""
    if isinstance(value, str):
        return _changeable(model, value, user, field), None
    if isinstance(value, dict):
        data = dict(value)
        if "id" in data:
            return _changeable(model, data.pop("id"), user, f"{field}.id"), data
        return None, data
    raise ValidationError({field: ["An id or an object."]})


class DeployAgentWorkflowView(_FlowView):
    @extend_schema(
        operation_id="integration_deploy_agent_workflow",
        summary="Create or update an agent and its workflow, deploy and pin",
        request=DeployAgentWorkflowSerializer,
        responses={
            200: DeployAgentWorkflowResultSerializer,
            201: DeployAgentWorkflowResultSerializer,
            400: FlowProblemSerializer,
        },
    )
    def post(self, request):
        """In one all-or-nothing step: create or update the agent, deploy it, create or update
        the workflow with its agent node(s) pointed at it. A failed deploy check is a 400 with
        the check report and nothing changed. Ids must name objects you may change (404
        otherwise). 201 when something was created, 200 when both were updated."""
        data = DeployAgentWorkflowSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        agent, agent_data = _object_or_data(Agent, data.validated_data["agent"], request.user, "agent")
        workflow, workflow_data = _object_or_data(
            Workflow, data.validated_data["workflow"], request.user, "workflow"
        )
        result = services.agent_workflow_deploy(
            actor=request.user,
            agent=agent,
            agent_data=agent_data,
            workflow=workflow,
            workflow_data=workflow_data,
        )
        workflow = Workflow.objects.select_related("owner").get(pk=result["workflow"].pk)
        body = {
            "agent": _fresh_agent(result["agent"]),
            "workflow": workflow,
            "deploy": {"version": result["version"], "status": "deployed", "checks": result["checks"]},
            "created": result["created"],
        }
        created = any(result["created"].values())
        return Response(
            DeployAgentWorkflowResultSerializer(body).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class _BatchView(_FlowView):
    kind: str
    may_not_exist = False

    def post(self, request):
        data = BatchCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        results = services.batch_create(
            kind=self.kind,
            owner=request.user,
            items=data.validated_data["items"],
            atomic=data.validated_data["atomic"],
        )
        for result in results:
            if "errors" in result:
                result["errors"] = flatten_errors(result["errors"])
        created = sum(1 for r in results if r["status"] == 201)
        body = {"created": created, "failed": len(results) - created, "results": results}
        code = status.HTTP_201_CREATED if data.validated_data["atomic"] else status.HTTP_207_MULTI_STATUS
        return Response(EventBatchResultSerializer(body).data, status=code)


BATCH_DOC = (
    "Create up to INTEGRATION_BATCH_MAX_ITEMS (default 100) {kind}, each through the same create "
    "service as POST /{kind} (validated and audited alike). `atomic: true`: all or none — 201, or "
    "400 naming each failing field as items[i].<field>. Otherwise 207 with a result per item "
    "(201 with its id, or 400 with its errors). Your role must allow creating {kind}."
)


class BatchAgentsView(_BatchView):
    kind = "agents"

    @extend_schema(
        operation_id="integration_batch_agents",
        summary="Create agents in a batch",
        description=BATCH_DOC.format(kind="agents"),
        request=BatchCreateSerializer,
        responses={201: EventBatchResultSerializer, 207: EventBatchResultSerializer},
    )
    def post(self, request):
        """Create agents in a batch (atomic, or per item with 207)."""
        return super().post(request)


class BatchWorkflowsView(_BatchView):
    kind = "workflows"

    @extend_schema(
        operation_id="integration_batch_workflows",
        summary="Create workflows in a batch",
        description=BATCH_DOC.format(kind="workflows"),
        request=BatchCreateSerializer,
        responses={201: EventBatchResultSerializer, 207: EventBatchResultSerializer},
    )
    def post(self, request):
        """Create workflows in a batch (atomic, or per item with 207)."""
        return super().post(request)


class IntegrationStatusView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="integration_status",
        summary="State of the integrations",
        request=None,
        responses={200: IntegrationStatusSerializer},
    )
    def get(self, request):
        """One section per integration area (what you may see; an admin: everything): flows
        and batch activity, webhooks, API connections, import/sync jobs."""
        return Response(IntegrationStatusSerializer(integration_status(request.user)).data)
