from rest_framework import serializers

from agentmesh.core.serializers import OwnerField, StrictModelSerializer, StrictSerializer
from agents.api.serializers import DurationPercentilesSerializer

from ..models import ExecutionStatus, StepExecution, StepStatus, Workflow, WorkflowExecution, WorkflowVersion
from ..services import WORKFLOW_FIELDS

EXECUTION_STATUS_HELP = "One of: " + ", ".join(ExecutionStatus.values) + "."
STEP_STATUS_HELP = "One of: " + ", ".join(StepStatus.values) + "."


class WorkflowSerializer(StrictModelSerializer):
    owner = OwnerField()
    definition = serializers.JSONField(
        help_text="nodes, edges, inputs (JSON Schema), outputs (name -> expression), start, timeout_seconds."
    )
    tags = serializers.ListField(child=serializers.CharField(max_length=50), required=False)
    version = serializers.IntegerField(read_only=True, help_text="Number of the current version.")

    class Meta:
        model = Workflow
        fields = ["id", *WORKFLOW_FIELDS, "version", "owner", "created_at", "updated_at"]


class WorkflowVersionSerializer(StrictModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    definition = serializers.JSONField(read_only=True)

    class Meta:
        model = WorkflowVersion
        fields = ["id", "version", "definition", "created_by", "created_at"]
        read_only_fields = fields


class StepExecutionSerializer(StrictModelSerializer):
    status = serializers.CharField(read_only=True, help_text=STEP_STATUS_HELP)

    class Meta:
        model = StepExecution
        fields = [
            "id",
            "node_id",
            "node_type",
            "attempt",
            "status",
            "input",
            "output",
            "error",
            "error_kind",
            "wait_kind",
            "wake_at",
            "not_before",
            "started_at",
            "finished_at",
            "duration_ms",
            "worker",
            "dispatches",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "idempotency_key",
            "state",
            "created_at",
        ]
        read_only_fields = fields


class WorkflowExecutionSerializer(StrictModelSerializer):
    workflow = serializers.UUIDField(
        source="workflow_id", read_only=True, allow_null=True, help_text="Null once the workflow is deleted."
    )
    workflow_name = serializers.CharField(read_only=True, help_text="The workflow's name when it ran.")
    version = serializers.IntegerField(
        source="workflow_version_number",
        read_only=True,
        allow_null=True,
        help_text="The number of the workflow version that ran.",
    )
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    status = serializers.CharField(read_only=True, help_text=EXECUTION_STATUS_HELP)

    class Meta:
        model = WorkflowExecution
        fields = [
            "id",
            "workflow",
            "workflow_name",
            "version",
            "user",
            "status",
            "inputs",
            "outputs",
            "error",
            "idempotency_key",
            "parent_step",
            "depth",
            "retry_of",
            "deadline",
            "started_at",
            "finished_at",
            "duration_ms",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "trace_id",
            "created_at",
        ]
        read_only_fields = fields


class WorkflowExecutionDetailSerializer(WorkflowExecutionSerializer):
    steps = StepExecutionSerializer(many=True, read_only=True, help_text="Every attempt, in order.")

    class Meta(WorkflowExecutionSerializer.Meta):
        fields = [*WorkflowExecutionSerializer.Meta.fields, "steps"]
        read_only_fields = fields


class WorkflowExecuteRequestSerializer(StrictSerializer):
    inputs = serializers.DictField(
        required=False, default=dict, help_text="Checked against the input schema."
    )
    mode = serializers.ChoiceField(
        choices=["async", "sync"],
        default="async",
        help_text="async: 202 at once; sync: wait (at most WORKFLOWS_SYNC_MAX_SECONDS) for the end.",
    )
    version = serializers.IntegerField(
        required=False, min_value=1, max_value=2**31 - 1, help_text="Run this version (default: current)."
    )
    wait_seconds = serializers.FloatField(
        required=False,
        min_value=0,
        max_value=3600,
        help_text="sync: wait at most this long (capped by the setting).",
    )


class DecisionRequestSerializer(StrictSerializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    node_id = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=64,
        help_text="Which approval (if several wait).",
    )


class StepFailureSerializer(StrictSerializer):
    node_id = serializers.CharField()
    failures = serializers.IntegerField()
    timeouts = serializers.IntegerField()


class WorkflowStatsSerializer(StrictSerializer):
    workflow_id = serializers.UUIDField()
    days = serializers.IntegerField()
    executions = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())
    duration_ms = DurationPercentilesSerializer()  # the one agents declare: one schema component
    step_failures = StepFailureSerializer(many=True, help_text="The nodes that fail most (hot spots).")
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost_usd = serializers.DecimalField(max_digits=20, decimal_places=8)
