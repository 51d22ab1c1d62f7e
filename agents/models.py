"""Agents: an LLM model config + prompt + tools + constraints; deploy snapshots a version;
runs record every interaction (steps, messages, usage, cost)."""

from decimal import Decimal

from django.conf import settings
from django.db import models

from agentmesh.core.models import OwnedModel, TimeStampedModel, object_permission_models


class AgentStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    DEPLOYED = "deployed", "Deployed"
    UNDEPLOYED = "undeployed", "Undeployed"
    ERROR = "error", "Error"


class Agent(OwnedModel):
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    model = models.ForeignKey("masterdata.ModelConfig", on_delete=models.PROTECT, related_name="agents")
    prompt = models.ForeignKey(
        "masterdata.Prompt",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="agents",
        help_text="A master-data prompt as the system prompt (else system_prompt is used).",
    )
    prompt_variables = models.JSONField(default=dict, blank=True)
    system_prompt = models.TextField(blank=True, help_text="Inline system prompt (sandboxed template).")
    tools = models.ManyToManyField("tools.Tool", blank=True, related_name="agents")
    skills = models.ManyToManyField("masterdata.Skill", blank=True, related_name="agents")
    constraints = models.ManyToManyField("masterdata.Constraint", blank=True, related_name="agents")
    memory = models.JSONField(
        default=dict, blank=True, help_text='Conversation window: {"max_messages": 20, "max_tokens": 4000}.'
    )
    response_format = models.JSONField(
        default=dict, blank=True, help_text='{"type": "text"} or {"type": "json_schema", "schema": {…}}.'
    )
    parameters = models.JSONField(default=dict, blank=True, help_text="Overrides of the model's parameters.")
    status = models.CharField(
        max_length=20, choices=AgentStatus.choices, default=AgentStatus.DRAFT, db_index=True
    )
    deployed_version = models.ForeignKey(
        "AgentVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    deployed_at = models.DateTimeField(null=True, blank=True)

    class Meta(OwnedModel.Meta):
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="agents_agent_unique_name_per_owner"),
        ]

    def __str__(self) -> str:
        return self.name


class AgentVersion(TimeStampedModel):
    """What deploy validated, frozen: runs use this, never the live (editable) agent."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    snapshot = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta(TimeStampedModel.Meta):
        ordering = ["-version"]
        constraints = [models.UniqueConstraint(fields=["agent", "version"], name="agents_version_unique")]

    def __str__(self) -> str:
        return f"{self.agent_id} v{self.version}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError("Agent versions are immutable.")
        super().save(*args, **kwargs)


class Conversation(TimeStampedModel):
    # Kept (agent set to null) when the agent is deleted: its messages stay readable.
    agent = models.ForeignKey(
        Agent, on_delete=models.SET_NULL, null=True, blank=True, related_name="conversations"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    title = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # The run holding the conversation: runs on one conversation are serialized.
    active_run_id = models.UUIDField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return self.title or str(self.pk)


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    INCOMPLETE = "incomplete", "Incomplete"  # a limit stopped it; partial output kept
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_RUN_STATUSES = (RunStatus.SUCCEEDED, RunStatus.INCOMPLETE, RunStatus.FAILED, RunStatus.CANCELLED)


class StopReason(models.TextChoices):
    COMPLETED = "completed", "Completed"
    MAX_TURNS = "max_turns", "Max turns"
    MAX_TOOL_CALLS = "max_tool_calls", "Max tool calls"
    TOKEN_BUDGET = "token_budget", "Token budget"
    TIMEOUT = "timeout", "Timeout"
    COST_LIMIT = "cost_limit", "Cost limit"
    TOOL_POLICY = "tool_policy", "Tool policy"
    CONTENT_POLICY = "content_policy", "Content policy"
    RATE_LIMIT = "rate_limit", "Rate limit"
    CANCELLED = "cancelled", "Cancelled"
    ERROR = "error", "Error"


class AgentRun(TimeStampedModel):
    # History outlives the agent: deleting it sets these to null, the names below remain.
    agent = models.ForeignKey(Agent, on_delete=models.SET_NULL, null=True, blank=True, related_name="runs")
    version = models.ForeignKey(
        AgentVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="runs"
    )
    agent_name = models.CharField(max_length=100, blank=True, help_text="The agent's name when it ran.")
    agent_version_number = models.PositiveIntegerField(
        null=True, blank=True, help_text="The number of the version that ran."
    )
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="runs")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    parent_run = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="child_runs"
    )
    depth = models.PositiveSmallIntegerField(default=0, help_text="0, or how deep in agent-calls-agent.")
    status = models.CharField(
        max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True
    )
    stop_reason = models.CharField(max_length=30, choices=StopReason.choices, blank=True, db_index=True)
    input = models.JSONField(
        default=dict, blank=True, help_text="The new messages and variables of this run."
    )
    output = models.TextField(blank=True)
    output_json = models.JSONField(null=True, blank=True, help_text="Parsed output when the format is JSON.")
    error = models.TextField(blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal("0"))
    turns = models.PositiveIntegerField(default=0)
    tool_calls = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    cancel_requested = models.BooleanField(default=False)
    background = models.BooleanField(default=False)
    metadata = models.JSONField(default=dict, blank=True)
    trace_id = models.CharField(max_length=32, blank=True, db_index=True)

    class Meta(TimeStampedModel.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "user", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="agents_run_unique_idempotency_key",
            )
        ]
        indexes = [models.Index(fields=["agent", "created_at"], name="agents_run_agent_time")]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.status})"

    def save(self, *args, **kwargs):
        if self._state.adding:  # what it ran with, from the objects the creator passed
            if not self.agent_name and self.agent_id:
                self.agent_name = self.agent.name
            if self.agent_version_number is None and self.version_id:
                self.agent_version_number = self.version.version
        super().save(*args, **kwargs)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_RUN_STATUSES


class StepKind(models.TextChoices):
    LLM = "llm", "LLM call"
    TOOL = "tool", "Tool call"


class AgentRunStep(TimeStampedModel):
    run = models.ForeignKey(AgentRun, on_delete=models.CASCADE, related_name="steps")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=StepKind.choices)
    name = models.CharField(max_length=200, blank=True, help_text="Model name or tool name.")
    status = models.CharField(max_length=20, default="succeeded")
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal("0"))
    duration_ms = models.FloatField(null=True, blank=True)
    tool_execution = models.ForeignKey(
        "tools.ToolExecution", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta(TimeStampedModel.Meta):
        ordering = ["run", "seq"]

    def __str__(self) -> str:
        return f"{self.run_id} #{self.seq} {self.kind} {self.name}"


class Message(TimeStampedModel):
    """One Chat Completions message of a conversation, in order."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    run = models.ForeignKey(
        AgentRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="messages"
    )
    seq = models.PositiveIntegerField()
    role = models.CharField(max_length=20)
    content = models.TextField(null=True, blank=True)
    tool_calls = models.JSONField(null=True, blank=True)
    tool_call_id = models.CharField(max_length=200, blank=True)

    class Meta(TimeStampedModel.Meta):
        ordering = ["conversation", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="agents_message_seq_unique")
        ]

    def __str__(self) -> str:
        return f"{self.conversation_id} #{self.seq} {self.role}"

    def as_chat(self) -> dict:
        message = {"role": self.role, "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        if self.tool_call_id:
            message["tool_call_id"] = self.tool_call_id
        return message


AgentUserPermission, AgentGroupPermission = object_permission_models(Agent)
