"""The `agent` tool type: a deployed agent callable as a tool by another agent (or a workflow),
each call a child run one level deeper, up to AGENTS_MAX_DEPTH."""

from django.conf import settings

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

from .models import Agent, AgentRun, AgentStatus, RunStatus

CONFIG_SCHEMA = {
    "type": "object",
    "required": ["agent_id"],
    "additionalProperties": False,
    "properties": {"agent_id": {"type": "string", "format": "uuid", "description": "The agent to call."}},
}
PARAMETERS = {
    "type": "object",
    "required": ["input"],
    "properties": {"input": {"type": "string", "description": "What to ask the agent."}},
}


class AgentToolExecutor(Executor):
    type = "agent"
    label = "Agent"
    description = (
        "Asks another deployed agent (one run of it per call); nesting is limited by AGENTS_MAX_DEPTH."
    )
    config_schema = CONFIG_SCHEMA

    def check_config(self, config: dict, *, owner) -> None:
        from agentmesh.core.permissions import has_object_action

        agent = Agent.objects.filter(pk=config["agent_id"]).first() if is_uuid(config["agent_id"]) else None
        if agent is None or not has_object_action(owner, agent, "use"):
            raise ConfigInvalid("No agent with this id that you may use.", field="agent_id")

    def default_parameters_schema(self, config: dict) -> dict:
        return PARAMETERS

    def execute(self, call: ToolCall) -> ToolOutput:
        from .runs import run_execute, run_start
        from .runtime.loop import current_run

        caller = current_run.get()
        parent = AgentRun.objects.filter(pk=caller[0]).first() if caller else None
        depth = caller[1] + 1 if caller else 0
        if depth > settings.AGENTS_MAX_DEPTH:
            raise ToolError(
                f"Agents may call agents at most {settings.AGENTS_MAX_DEPTH} levels deep.",
                kind=ErrorKind.CONFIG,
            )
        agent = Agent.objects.filter(pk=call.tool.config["agent_id"]).first()
        if agent is None:
            raise ToolError("The called agent no longer exists.", kind=ErrorKind.CONFIG)
        if agent.status != AgentStatus.DEPLOYED:
            raise ToolError("The called agent is not deployed.", kind=ErrorKind.CONFIG)
        user = call.actor if getattr(call.actor, "pk", None) else call.tool.owner
        run, _ = run_start(
            agent=agent, user=user, input=str(call.arguments.get("input", "")), parent_run=parent
        )
        run = run_execute(run=run)
        if run.status != RunStatus.SUCCEEDED:
            raise ToolError(
                f"The agent run ended {run.status} ({run.stop_reason}): {run.error}",
                kind=ErrorKind.TOOL_ERROR,
            )
        return ToolOutput(
            output=run.output_json if run.output_json is not None else run.output,
            metadata={"run_id": str(run.pk)},
        )

    def live_checks(self, tool, *, actor) -> list[Check]:
        agent = Agent.objects.filter(pk=tool.config.get("agent_id")).first()
        deployed = agent is not None and agent.status == AgentStatus.DEPLOYED
        return [Check("agent_deployed", deployed, "" if deployed else "The agent is not deployed.")]


registry.register(AgentToolExecutor())
