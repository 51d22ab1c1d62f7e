"""Every write to workflows: create/update (each definition change freezes a new immutable
version), delete, and executing: start (idempotent), cancel, approve/reject, retry.

The engine itself lives in workflows.engine; these functions are what views, tasks, the
`workflow` tool type and admin call.
"""

import time
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from agentmesh.core.audit import audited
from agentmesh.core.exceptions import ConflictError, ServiceValidationError
from agentmesh.core.services import object_delete_keeping_history
from agentmesh.core.signals import snapshot
from masterdata.services import ensure_unique_per_owner, normalize_tags
from observability.services import event_record

from .engine import scheduler
from .engine.graph import validate_definition
from .models import (
    Workflow,
    WorkflowExecution,
    WorkflowStatus,
    WorkflowVersion,
)
from .selectors import unfinished_executions

# What callers may set, in display order (the API serializer uses it too).
WORKFLOW_FIELDS = ("name", "description", "status", "definition", "tags")
NAME_MAX_CHARS = Workflow._meta.get_field("name").max_length

IllegalTransition = scheduler.IllegalTransition


class WorkflowArchived(ConflictError):
    pass


def _validate(workflow: Workflow, *, definition_changed: bool) -> None:
    workflow.name = (workflow.name or "").strip()
    if not workflow.name:
        raise ServiceValidationError("The name may not be empty.", field="name", code="required")
    if len(workflow.name) > NAME_MAX_CHARS:
        raise ServiceValidationError(f"At most {NAME_MAX_CHARS} characters.", field="name")
    ensure_unique_per_owner(workflow, "name")
    if workflow.status not in WorkflowStatus.values:
        raise ServiceValidationError(f"One of: {', '.join(WorkflowStatus.values)}.", field="status")
    workflow.tags = normalize_tags(workflow.tags)
    if definition_changed:
        validate_definition(workflow.definition, owner=workflow.owner, workflow=workflow)


def _check_fields(fields: dict) -> None:
    unknown = set(fields) - set(WORKFLOW_FIELDS)
    if unknown:
        raise TypeError(f"Unexpected workflow fields: {sorted(unknown)}")


@transaction.atomic
def workflow_create(*, owner, name: str, definition: Any, actor=None, **fields: Any) -> Workflow:
    _check_fields(fields)
    workflow = Workflow(owner=owner, name=name, definition=definition, version=1, **fields)
    _validate(workflow, definition_changed=True)
    workflow.save()
    WorkflowVersion.objects.create(
        workflow=workflow, version=1, definition=workflow.definition, created_by=actor or owner
    )
    audited("create", workflow, actor=actor)
    return workflow


@transaction.atomic
def workflow_update(*, workflow: Workflow, actor=None, **fields: Any) -> Workflow:
    """Update; a changed definition becomes version n+1 (earlier versions and the executions
    pinned to them are untouched)."""
    _check_fields(fields)
    workflow = Workflow.objects.select_for_update().select_related("owner").get(pk=workflow.pk)
    before = snapshot(workflow)
    definition_changed = "definition" in fields and fields["definition"] != workflow.definition
    for field, value in fields.items():
        setattr(workflow, field, value)
    _validate(workflow, definition_changed=definition_changed)
    if definition_changed:
        workflow.version = (workflow.versions.aggregate(n=Max("version"))["n"] or 0) + 1
        WorkflowVersion.objects.create(
            workflow=workflow, version=workflow.version, definition=workflow.definition, created_by=actor
        )
    workflow.save()
    audited("update", workflow, before=before, actor=actor)
    if definition_changed:
        event_record(
            type="workflow.version.created",
            source="workflows",
            actor=actor,
            resource=workflow,
            payload={"version": workflow.version},
        )
    return workflow


@transaction.atomic
def workflow_delete(*, workflow: Workflow) -> None:
    """Delete the workflow and its versions; its executions (and their steps) stay, readable by
    their users (and admins), with the workflow's name and version number they ran with.
    Refused (409) while an execution is queued, running or waiting: cancel it first."""
    object_delete_keeping_history(
        instance=workflow,
        unfinished=unfinished_executions,
        what="queued, running or waiting execution(s)",
        advice="cancel them first",
    )


def _version(workflow: Workflow, number: int | None) -> WorkflowVersion | None:
    if number is None:
        return None
    version = WorkflowVersion.objects.filter(workflow=workflow, version=number).first()
    if version is None:
        raise ServiceValidationError("The workflow has no such version.", field="version")
    return version


def workflow_execute(
    *,
    workflow: Workflow,
    user,
    inputs: Any = None,
    version: int | None = None,
    idempotency_key: str = "",
    depth: int = 0,
) -> tuple[WorkflowExecution, bool]:
    """Start an execution (of the current version, or `version`): (execution, created).
    Inputs are checked against the version's input schema (400 naming the field). `depth` > 0:
    started from inside another execution's step (not counted against the concurrency limits)."""
    if workflow.status == WorkflowStatus.ARCHIVED:
        raise WorkflowArchived(f"The workflow {workflow.name} is archived.")
    execution, created = scheduler.execution_start(
        workflow=workflow,
        user=user,
        inputs=inputs,
        version=_version(workflow, version),
        idempotency_key=idempotency_key,
        depth=depth,
    )
    if created and depth == 0:  # a sub-workflow is part of its parent's story, not a new act
        audited(
            "execute",
            execution,
            actor=user,
            details={"workflow_id": str(workflow.pk), "version": execution.workflow_version_number},
        )
    return execution, created


def execution_wait(*, execution: WorkflowExecution, timeout: float) -> WorkflowExecution:
    """Poll until the execution has ended or `timeout` seconds passed (sync mode)."""
    deadline = time.monotonic() + max(0.0, min(timeout, settings.WORKFLOWS_SYNC_MAX_SECONDS))
    delay = 0.02
    while not execution.finished and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
        execution.refresh_from_db()
    return execution


def execution_cancel(*, execution: WorkflowExecution, actor) -> WorkflowExecution:
    before = snapshot(execution)
    execution = scheduler.execution_cancel(execution=execution, actor=actor)
    audited("cancel", execution, before=before, actor=actor)
    return execution


def execution_decide(
    *, execution: WorkflowExecution, actor, approve: bool, comment: str = "", node_id: str = ""
) -> WorkflowExecution:
    execution = scheduler.approval_decide(
        execution=execution, actor=actor, approve=approve, comment=comment, node_id=node_id
    )
    audited(
        "approve" if approve else "reject",
        execution,
        actor=actor,
        details={"node_id": node_id, "comment": comment[:500]},
    )
    return execution


def execution_retry(*, execution: WorkflowExecution, actor) -> WorkflowExecution:
    if execution.workflow_id is None or execution.version_id is None:
        raise ConflictError("The workflow of this execution was deleted; it cannot be retried.")
    retry = scheduler.execution_retry(execution=execution, actor=actor)
    audited("retry", execution, actor=actor, details={"retry_id": str(retry.pk)})
    return retry


def parse_days(value: str | None, *, default: int = 30) -> int:
    if value in (None, ""):
        return default
    # Up to 3 ASCII digits: str.isdigit() admits "²", and int() refuses 4301+ digits (500s).
    if not (value.isascii() and value.isdigit() and len(value) <= 3) or not 1 <= int(value) <= 365:
        raise ServiceValidationError("A whole number of days from 1 to 365.", field="days")
    return int(value)
