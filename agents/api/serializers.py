from rest_framework import serializers

from agentmesh.core.serializers import OwnerField, StrictModelSerializer, StrictSerializer
from masterdata.models import Constraint, ModelConfig, Prompt, Skill
from tools.models import Tool

from ..models import (
    Agent,
    AgentRun,
    AgentRunStep,
    AgentVersion,
    Conversation,
    Message,
    RunStatus,
    StepKind,
    StopReason,
)
from ..services import AGENT_FIELDS


def _reference(queryset, label: str, **kwargs) -> serializers.PrimaryKeyRelatedField:
    return serializers.PrimaryKeyRelatedField(
        queryset=queryset,
        pk_field=serializers.UUIDField(),
        error_messages={
            "does_not_exist": f"No usable {label} with this id.",
            "incorrect_type": f"A {label} id.",
        },
        **kwargs,
    )


class AgentVersionSummarySerializer(StrictModelSerializer):
    class Meta:
        model = AgentVersion
        fields = ["version", "created_at"]
        read_only_fields = fields


class AgentSerializer(StrictModelSerializer):
    owner = OwnerField()
    model = _reference(
        ModelConfig.objects.all(),
        "model",
        help_text="A model config you own or that is shared with you for use.",
    )
    prompt = _reference(
        Prompt.objects.all(),
        "prompt",
        required=False,
        allow_null=True,
        help_text="A master-data prompt as the system prompt (wins over system_prompt).",
    )
    tools = _reference(Tool.objects.all(), "tool", many=True, required=False, help_text="Tool ids.")
    skills = _reference(Skill.objects.all(), "skill", many=True, required=False, help_text="Skill ids.")
    constraints = _reference(
        Constraint.objects.all(), "constraint", many=True, required=False, help_text="Constraint ids."
    )
    prompt_variables = serializers.DictField(
        required=False, help_text="Values of the system prompt's variables (over the prompt's defaults)."
    )
    memory = serializers.DictField(
        required=False, help_text='{"max_messages": 1-500, "max_tokens": 1-1000000}, both optional.'
    )
    response_format = serializers.DictField(
        required=False, help_text='{"type": "text"} (default) or {"type": "json_schema", "schema": {...}}.'
    )
    parameters = serializers.DictField(
        required=False,
        help_text="temperature (0-2), top_p (0-1), max_tokens (>= 1): over the model's defaults.",
    )
    # A method field: a dotted source with a default is left out of PATCH answers (partial).
    deployed_version = serializers.SerializerMethodField(help_text="Number of the deployed version.")
    versions = AgentVersionSummarySerializer(many=True, read_only=True, help_text="Newest first.")

    class Meta:
        model = Agent
        fields = [
            "id",
            *AGENT_FIELDS,
            "status",
            "deployed_version",
            "deployed_at",
            "versions",
            "owner",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["status", "deployed_at"]

    def get_deployed_version(self, agent) -> int | None:
        return agent.deployed_version.version if agent.deployed_version_id else None


class AgentVersionSerializer(StrictModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    snapshot = serializers.JSONField(read_only=True, help_text="What deploy validated and runs use.")

    class Meta:
        model = AgentVersion
        fields = ["id", "version", "snapshot", "created_by", "created_at"]
        read_only_fields = fields


class DeployCheckSerializer(StrictSerializer):
    name = serializers.CharField()
    ok = serializers.BooleanField()
    message = serializers.CharField(allow_blank=True)


class DeployResultSerializer(StrictSerializer):
    version = serializers.IntegerField()
    status = serializers.CharField()
    checks = DeployCheckSerializer(many=True)


class ErrorItemSerializer(StrictSerializer):
    field = serializers.CharField(allow_null=True)
    code = serializers.CharField()
    message = serializers.CharField()


class DeployFailedSerializer(StrictSerializer):
    """The API error shape plus the whole check report."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = ErrorItemSerializer(many=True, help_text='One per failed check: field "checks.<name>".')
    checks = DeployCheckSerializer(many=True)


class DurationPercentilesSerializer(StrictSerializer):
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)


class AgentDayStatsSerializer(StrictSerializer):
    day = serializers.DateField()
    runs = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    cost_usd = serializers.DecimalField(max_digits=20, decimal_places=8)


class AgentStatsSerializer(StrictSerializer):
    agent_id = serializers.UUIDField()
    days = serializers.IntegerField()
    runs = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())
    by_stop_reason = serializers.DictField(child=serializers.IntegerField())
    duration_ms = DurationPercentilesSerializer()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost_usd = serializers.DecimalField(max_digits=20, decimal_places=8)
    tool_calls = serializers.IntegerField()
    turns = serializers.IntegerField()
    per_day = AgentDayStatsSerializer(many=True)


class ConversationSerializer(StrictModelSerializer):
    agent = serializers.UUIDField(
        source="agent_id", read_only=True, allow_null=True, help_text="Null once the agent is deleted."
    )
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Conversation
        fields = ["id", "agent", "user", "title", "metadata", "active_run_id", "created_at", "updated_at"]
        read_only_fields = fields


class MessageSerializer(StrictModelSerializer):
    class Meta:
        model = Message
        fields = ["id", "seq", "role", "content", "tool_calls", "tool_call_id", "run", "created_at"]
        read_only_fields = fields


# Run and step status/kind are plain text here: the run status enum belongs to the interact
# result, and a second component carrying it would make the enum's name ambiguous.
RUN_STATUS_HELP = "One of: " + ", ".join(RunStatus.values) + "."
STOP_REASON_HELP = "Empty until the run stops, then one of: " + ", ".join(StopReason.values) + "."


class AgentRunStepSerializer(StrictModelSerializer):
    kind = serializers.CharField(read_only=True, help_text="One of: " + ", ".join(StepKind.values) + ".")

    class Meta:
        model = AgentRunStep
        fields = [
            "id",
            "seq",
            "kind",
            "name",
            "status",
            "input",
            "output",
            "error",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "duration_ms",
            "tool_execution",
            "created_at",
        ]
        read_only_fields = fields


class AgentRunSerializer(StrictModelSerializer):
    agent = serializers.UUIDField(
        source="agent_id", read_only=True, allow_null=True, help_text="Null once the agent is deleted."
    )
    agent_name = serializers.CharField(read_only=True, help_text="The agent's name when it ran.")
    version = serializers.IntegerField(
        source="agent_version_number",
        read_only=True,
        allow_null=True,
        help_text="The number of the agent version that ran.",
    )
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    status = serializers.CharField(read_only=True, help_text=RUN_STATUS_HELP)
    stop_reason = serializers.CharField(read_only=True, help_text=STOP_REASON_HELP)

    class Meta:
        model = AgentRun
        fields = [
            "id",
            "agent",
            "agent_name",
            "version",
            "conversation",
            "user",
            "parent_run",
            "depth",
            "status",
            "stop_reason",
            "input",
            "output",
            "output_json",
            "error",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "turns",
            "tool_calls",
            "started_at",
            "finished_at",
            "duration_ms",
            "background",
            "cancel_requested",
            "metadata",
            "trace_id",
            "created_at",
        ]
        read_only_fields = fields


class AgentRunDetailSerializer(AgentRunSerializer):
    steps = AgentRunStepSerializer(many=True, read_only=True, help_text="In order.")

    class Meta(AgentRunSerializer.Meta):
        fields = [*AgentRunSerializer.Meta.fields, "steps"]
        read_only_fields = fields
