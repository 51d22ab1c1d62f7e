"""Workflows: versioned graph definitions and their durable executions.

A `Workflow` is the editable definition; every change of the definition freezes a new
immutable `WorkflowVersion`. A `WorkflowExecution` pins the version it started with and holds
the run's state; a `StepExecution` is one attempt of one node. Celery carries only ids: the
engine (workflows.engine.scheduler) reads and writes these rows.
"""

from decimal import Decimal

from django.conf import settings
from django.db import models

from agentmesh.core.models import OwnedModel, TimeStampedModel, object_permission_models


class WorkflowStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    ARCHIVED = "archived", "Archived"


class Workflow(OwnedModel):
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    status = models.CharField(
        max_length=20, choices=WorkflowStatus.choices, default=WorkflowStatus.ACTIVE, db_index=True
    )
    definition = models.JSONField(default=dict, blank=True, help_text="nodes, edges, inputs, outputs.")
    version = models.PositiveIntegerField(default=1, help_text="Number of the current version.")
    tags = models.JSONField(default=list, blank=True)

    class Meta(OwnedModel.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name"], name="workflows_workflow_unique_name_per_owner"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class WorkflowVersion(TimeStampedModel):
    """A definition as it was saved, frozen: executions run this, never the live workflow."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    definition = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta(TimeStampedModel.Meta):
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "version"], name="workflows_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} v{self.version}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError("Workflow versions are immutable.")
        super().save(*args, **kwargs)


class ExecutionStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting"  # only approvals, delays or sub-workflows are pending
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    TIMED_OUT = "timed_out", "Timed out"


TERMINAL_EXECUTION_STATUSES = (
    ExecutionStatus.SUCCEEDED,
    ExecutionStatus.FAILED,
    ExecutionStatus.CANCELLED,
    ExecutionStatus.TIMED_OUT,
)
ACTIVE_EXECUTION_STATUSES = (ExecutionStatus.RUNNING, ExecutionStatus.WAITING)


class WorkflowExecution(TimeStampedModel):
    # History outlives the workflow: deleting it sets these to null, the names below remain.
    workflow = models.ForeignKey(
        Workflow, on_delete=models.SET_NULL, null=True, blank=True, related_name="executions"
    )
    version = models.ForeignKey(
        WorkflowVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="executions"
    )
    workflow_name = models.CharField(max_length=100, blank=True, help_text="The workflow's name when it ran.")
    workflow_version_number = models.PositiveIntegerField(
        null=True, blank=True, help_text="The number of the version that ran."
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="On whose behalf the workflow runs.",
    )
    status = models.CharField(
        max_length=20, choices=ExecutionStatus.choices, default=ExecutionStatus.QUEUED, db_index=True
    )
    inputs = models.JSONField(default=dict, blank=True)
    outputs = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    parent_step = models.ForeignKey(
        "StepExecution", on_delete=models.SET_NULL, null=True, blank=True, related_name="child_executions"
    )
    depth = models.PositiveSmallIntegerField(default=0, help_text="0, or how deep in sub-workflows.")
    retry_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="retries"
    )
    deadline = models.DateTimeField(null=True, blank=True, help_text="The run times out after this.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal("0"))
    trace_id = models.CharField(max_length=32, blank=True, db_index=True)
    span_id = models.CharField(max_length=16, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta(TimeStampedModel.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "user", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="workflows_execution_unique_idempotency_key",
            )
        ]
        indexes = [
            models.Index(fields=["workflow", "created_at"], name="workflows_exec_wf_time"),
            models.Index(fields=["status", "created_at"], name="workflows_exec_status_time"),
            models.Index(fields=["status", "deadline"], name="workflows_exec_deadline"),
            # admission: a workflow's queue, oldest first, and its running count
            models.Index(fields=["workflow", "status", "created_at"], name="workflows_exec_wf_queue"),
        ]

    def __str__(self) -> str:
        return f"execution {self.pk} ({self.status})"

    def save(self, *args, **kwargs):
        if self._state.adding:  # what it ran with, from the objects the creator passed
            if not self.workflow_name and self.workflow_id:
                self.workflow_name = self.workflow.name
            if self.workflow_version_number is None and self.version_id:
                self.workflow_version_number = self.version.version
        super().save(*args, **kwargs)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_EXECUTION_STATUSES


class StepStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting"  # approval, delay or sub-workflow
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    TIMED_OUT = "timed_out", "Timed out"
    SKIPPED = "skipped", "Skipped"  # no incoming branch was taken
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STEP_STATUSES = (
    StepStatus.SUCCEEDED,
    StepStatus.FAILED,
    StepStatus.TIMED_OUT,
    StepStatus.SKIPPED,
    StepStatus.CANCELLED,
)
PENDING_STEP_STATUSES = (StepStatus.QUEUED, StepStatus.RUNNING, StepStatus.WAITING)


class StepExecution(TimeStampedModel):
    """One attempt of one node of an execution. A retry is a new row with attempt + 1."""

    execution = models.ForeignKey(WorkflowExecution, on_delete=models.CASCADE, related_name="steps")
    node_id = models.CharField(max_length=64)
    node_type = models.CharField(max_length=20)
    attempt = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(
        max_length=20, choices=StepStatus.choices, default=StepStatus.QUEUED, db_index=True
    )
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    error_kind = models.CharField(max_length=30, blank=True)
    wait_kind = models.CharField(
        max_length=20, blank=True, help_text="approval, delay, workflow, map or loop."
    )
    wake_at = models.DateTimeField(null=True, blank=True, help_text="A delay ends / an approval times out.")
    not_before = models.DateTimeField(null=True, blank=True, help_text="A retry waits for its backoff.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    dispatches = models.PositiveSmallIntegerField(default=0, help_text="Times a worker claimed it.")
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal("0"))
    idempotency_key = models.CharField(
        max_length=200, help_text="Stable per node attempt: side effects may use it to run once."
    )
    state = models.JSONField(default=dict, blank=True, help_text="Handler state (map progress, approval).")

    class Meta(TimeStampedModel.Meta):
        ordering = ["execution", "created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["execution", "node_id", "attempt"], name="workflows_step_unique_attempt"
            )
        ]
        indexes = [
            models.Index(fields=["status", "lease_expires_at"], name="workflows_step_lease"),
            models.Index(fields=["status", "wake_at"], name="workflows_step_wake"),
            models.Index(fields=["execution", "node_id"], name="workflows_step_node"),
        ]

    def __str__(self) -> str:
        return f"{self.execution_id} {self.node_id}#{self.attempt} {self.status}"

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STEP_STATUSES


WorkflowUserPermission, WorkflowGroupPermission = object_permission_models(Workflow)
