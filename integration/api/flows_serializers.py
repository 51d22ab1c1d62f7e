from rest_framework import serializers

from agentmesh.core.serializers import StrictSerializer
from agents.api.serializers import (
    AgentSerializer,
    DeployCheckSerializer,
    DeployFailedSerializer,
    DeployResultSerializer,
)
from workflows.api.serializers import WorkflowSerializer

AGENT_OR_ID = (
    "An agent id (one you may change: used as it is) or an agent object as for POST /agents "
    '(created; with "id": that agent updated with the other fields).'
)
WORKFLOW_OR_ID = (
    "A workflow id (one you may change) or a workflow object as for POST /workflows (created; "
    'with "id": that workflow updated). Agent nodes without agent_id or with "$agent" are '
    "pinned to the agent; failing those, the only agent node is."
)


class AgentFromTemplateSerializer(StrictSerializer):
    template = serializers.UUIDField(help_text="A template of kind agent that you may use.")
    version = serializers.IntegerField(required=False, allow_null=True, help_text="Default: the latest.")
    params = serializers.DictField(required=False, default=dict, help_text="The template's parameters.")
    name = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=100, help_text="Default: the template's."
    )
    deploy = serializers.BooleanField(required=False, default=False, help_text="Deploy the new agent.")


class AgentFromTemplateResultSerializer(StrictSerializer):
    agent = AgentSerializer()
    deploy = DeployResultSerializer(allow_null=True, help_text="The deploy report (null without deploy).")


class DeployAgentWorkflowSerializer(StrictSerializer):
    agent = serializers.JSONField(help_text=AGENT_OR_ID)
    workflow = serializers.JSONField(help_text=WORKFLOW_OR_ID)


class CreatedFlagsSerializer(StrictSerializer):
    agent = serializers.BooleanField()
    workflow = serializers.BooleanField()


class DeployAgentWorkflowResultSerializer(StrictSerializer):
    agent = AgentSerializer()
    workflow = WorkflowSerializer()
    deploy = DeployResultSerializer()
    created = CreatedFlagsSerializer(help_text="Which of the two this call created (the rest it updated).")


class BatchCreateSerializer(StrictSerializer):
    items = serializers.ListField(
        child=serializers.JSONField(),
        allow_empty=False,
        help_text="Objects as for the single create endpoint; at most INTEGRATION_BATCH_MAX_ITEMS (100).",
    )
    atomic = serializers.BooleanField(
        required=False, default=False, help_text="All or none: any invalid item is a 400 naming items[i]."
    )


class IntegrationStatusSerializer(StrictSerializer):
    sections = serializers.DictField(
        child=serializers.DictField(),
        help_text="One object per integration area (flows, webhooks, connections, jobs), free-form.",
    )


class FlowProblemSerializer(DeployFailedSerializer):
    """The API error shape; with `checks` (the whole deploy report) when a deploy check failed."""

    checks = DeployCheckSerializer(many=True, required=False, help_text="Only when a deploy check failed.")
