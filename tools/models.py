"""Tools: typed, versioned callables (HTTP, built-in, MCP, …) and the record of every call."""

from django.conf import settings
from django.db import models

from agentmesh.core.models import OwnedModel, TimeStampedModel, object_permission_models

NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"  # what LLM function-calling APIs accept


class ToolStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    VALIDATED = "validated", "Validated"
    DEPLOYED = "deployed", "Deployed"
    DISABLED = "disabled", "Disabled"


class Tool(OwnedModel):
    """A callable with a JSON Schema of its arguments and a config checked per `type`.

    A change of type, config or schemas bumps `version` and returns the tool to `draft`: it
    must be validated and deployed again before agents and workflows may call it.
    """

    name = models.CharField(
        max_length=64, help_text="Function name shown to models: letters, digits, _ and -."
    )
    slug = models.SlugField(max_length=70)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=100, blank=True, db_index=True)
    type = models.CharField(max_length=30, db_index=True)
    parameters_schema = models.JSONField(default=dict, blank=True, help_text="JSON Schema of the arguments.")
    output_schema = models.JSONField(null=True, blank=True)
    config = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)
    timeout_seconds = models.PositiveIntegerField(default=30)
    max_retries = models.PositiveSmallIntegerField(default=0)
    retry_non_idempotent = models.BooleanField(
        default=False, help_text="Retry POST-like calls too (only when the remote side is idempotent)."
    )
    test_cases = models.JSONField(default=list, blank=True)
    version = models.PositiveIntegerField(default=1)
    status = models.CharField(
        max_length=20, choices=ToolStatus.choices, default=ToolStatus.DRAFT, db_index=True
    )
    validated_at = models.DateTimeField(null=True, blank=True)
    validation_report = models.JSONField(default=list, blank=True)
    deployed_at = models.DateTimeField(null=True, blank=True)

    class Meta(OwnedModel.Meta):
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="tools_tool_unique_name_per_owner"),
            models.UniqueConstraint(fields=["owner", "slug"], name="tools_tool_unique_slug_per_owner"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.type} v{self.version})"


class ExecutionStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    TIMED_OUT = "timed_out", "Timed out"


FINISHED_STATUSES = (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT)


class CallerType(models.TextChoices):
    USER = "user", "User"
    AGENT_RUN = "agent_run", "Agent run"
    WORKFLOW_STEP = "workflow_step", "Workflow step"
    TEST = "test", "Test"


class ToolExecution(TimeStampedModel):
    """One call of a tool: who called which version with what (secrets redacted), and how it went."""

    SENSITIVE_FIELDS = ("pending_arguments",)

    # History outlives the tool: deleting it sets `tool` to null, the name and version remain.
    tool = models.ForeignKey(
        Tool, on_delete=models.SET_NULL, null=True, blank=True, related_name="executions"
    )
    tool_name = models.CharField(max_length=64, blank=True, help_text="The tool's name when it ran.")
    tool_version = models.PositiveIntegerField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The user on whose behalf the tool ran.",
    )
    caller_type = models.CharField(max_length=20, choices=CallerType.choices, default=CallerType.USER)
    caller_ref = models.CharField(max_length=64, blank=True, help_text="Agent run or workflow step id.")
    arguments = models.JSONField(default=dict, blank=True)
    # Full arguments of a queued call, encrypted; cleared when a worker picks the call up.
    pending_arguments = models.TextField(blank=True, editable=False)
    status = models.CharField(
        max_length=20, choices=ExecutionStatus.choices, default=ExecutionStatus.QUEUED, db_index=True
    )
    result = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    error_kind = models.CharField(max_length=30, blank=True, db_index=True)
    attempt = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    is_test = models.BooleanField(default=False, help_text="Test runs do not count in the stats.")
    trace_id = models.CharField(max_length=32, blank=True, db_index=True)

    class Meta(TimeStampedModel.Meta):
        indexes = [models.Index(fields=["tool", "is_test", "created_at"], name="tools_exec_tool_time")]

    def __str__(self) -> str:
        return f"{self.tool_name or self.tool_id} v{self.tool_version} {self.status}"

    def save(self, *args, **kwargs):
        if self._state.adding and not self.tool_name and self.tool_id:
            self.tool_name = self.tool.name  # what it ran with
        super().save(*args, **kwargs)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES


ToolUserPermission, ToolGroupPermission = object_permission_models(Tool)
