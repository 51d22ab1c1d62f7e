"""The `workflow` tool type: a workflow callable as a tool (by an agent, or a tool execute call).

Each call starts an execution of the workflow's current version with the arguments as its
inputs and waits for it within the tool's timeout; a run that does not end in time is
cancelled and the call fails with a timeout.
"""

from tools.executors import (
    Check,
    ConfigInvalid,
    ErrorKind,
    Executor,
    ToolCall,
    ToolError,
    ToolOutput,
    registry,
)
from tools.executors.base import is_uuid

from .models import Workflow, WorkflowStatus

CONFIG_SCHEMA = {
    "type": "object",
    "required": ["workflow_id"],
    "additionalProperties": False,
    "properties": {
        "workflow_id": {"type": "string", "format": "uuid", "description": "The workflow to run."}
    },
}


class WorkflowToolExecutor(Executor):
    type = "workflow"
    label = "Workflow"
    description = "Runs a workflow with the arguments as its inputs and returns its outputs."
    config_schema = CONFIG_SCHEMA

    def _workflow(self, config: dict) -> Workflow | None:
        workflow_id = config.get("workflow_id")
        return Workflow.objects.filter(pk=workflow_id).first() if is_uuid(workflow_id) else None

    def check_config(self, config: dict, *, owner) -> None:
        from agentmesh.core.permissions import has_object_action

        workflow = self._workflow(config)
        if workflow is None or not has_object_action(owner, workflow, "use"):
            raise ConfigInvalid("No workflow with this id that you may use.", field="workflow_id")

    def default_parameters_schema(self, config: dict) -> dict:
        workflow = self._workflow(config)
        schema = (workflow.definition or {}).get("inputs") if workflow else None
        return schema if isinstance(schema, dict) and schema.get("type") == "object" else {"type": "object"}

    def execute(self, call: ToolCall) -> ToolOutput:
        from agentmesh.core.exceptions import ConflictError, ServiceValidationError

        from . import services

        workflow = self._workflow(call.tool.config)
        if workflow is None:
            raise ToolError("The workflow no longer exists.", kind=ErrorKind.CONFIG)
        from django.conf import settings

        from .engine.scheduler import current_depth

        outer = current_depth.get()  # called from inside a workflow step (through an agent)
        depth = 0 if outer is None else outer + 1
        if depth > settings.WORKFLOWS_MAX_DEPTH:
            raise ToolError(
                f"Workflows may start workflows at most {settings.WORKFLOWS_MAX_DEPTH} levels deep.",
                kind=ErrorKind.CONFIG,
            )
        user = call.actor if getattr(call.actor, "pk", None) else call.tool.owner
        try:
            execution, _ = services.workflow_execute(
                workflow=workflow, user=user, inputs=call.arguments, depth=depth
            )
        except ServiceValidationError as exc:
            field, messages = next(iter(exc.detail.items()))
            raise ToolError(f"{field}: {messages[0]}", kind=ErrorKind.INVALID_ARGUMENTS) from exc
        except ConflictError as exc:
            raise ToolError(str(exc.detail), kind=ErrorKind.CONFIG) from exc
        execution = services.execution_wait(execution=execution, timeout=call.remaining())
        if not execution.finished:
            services.execution_cancel(execution=execution, actor=None)
            raise ToolError(f"The workflow did not finish within {call.timeout:g}s.", kind=ErrorKind.TIMEOUT)
        if execution.status != "succeeded":
            raise ToolError(
                f"The workflow ended {execution.status}: {execution.error}", kind=ErrorKind.TOOL_ERROR
            )
        return ToolOutput(output=execution.outputs, metadata={"workflow_execution_id": str(execution.pk)})

    def live_checks(self, tool, *, actor) -> list[Check]:
        workflow = self._workflow(tool.config)
        usable = workflow is not None and workflow.status != WorkflowStatus.ARCHIVED
        return [Check("workflow_active", usable, "" if usable else "The workflow is gone or archived.")]


registry.register(WorkflowToolExecutor())
