"""Nodes that call out: a deployed agent, a deployed tool, one model call.

Side effects run once per node attempt: the agent run takes the step's idempotency key, and a
tool call is looked up by the step before it runs again (a step re-dispatched after its worker
died reuses what already succeeded); an HTTP tool also sends the key as `Idempotency-Key`, so
a server can apply a write cut off mid-call once.
"""

import json

from agentmesh.core.permissions import has_object_action
from tools.executors.base import is_uuid

from .. import expressions
from .base import DefinitionInvalid, Done, NodeHandler, StepContext, StepError, registry

UUID = {"type": "string", "format": "uuid"}


def _usable(model, pk, owner, label: str, field: str):
    obj = model.objects.filter(pk=pk).first() if is_uuid(pk) else None
    if obj is None or not has_object_action(owner, obj, "use"):
        raise DefinitionInvalid(f"No {label} with this id that you may use.", field=field)
    return obj


class AgentNode(NodeHandler):
    type = "agent"
    description = "Run a deployed agent with an input template; the output is its answer."
    inline = True
    config_schema = {
        "type": "object",
        "required": ["agent_id", "input"],
        "additionalProperties": False,
        "properties": {
            "agent_id": UUID,
            "input": {"type": "string", "minLength": 1, "maxLength": 100_000},
            "variables": {"type": "object"},
        },
    }
    template_fields = ("input", "variables")

    def check(self, config, *, owner, workflow=None) -> None:
        from agents.models import Agent

        _usable(Agent, config["agent_id"], owner, "agent", "agent_id")
        super().check(config, owner=owner, workflow=workflow)

    def step_refs(self, config) -> frozenset[str] | None:
        return expressions.step_refs(config)

    def run(self, ctx: StepContext) -> Done:
        from agents.models import Agent, AgentStatus, RunStatus
        from agents.runs import AgentNotDeployed, run_execute, run_start

        agent = Agent.objects.filter(pk=ctx.config["agent_id"]).select_related("deployed_version").first()
        if agent is None:
            raise StepError("The agent no longer exists.", kind="config", retryable=False)
        if agent.status != AgentStatus.DEPLOYED:
            raise StepError("The agent is not deployed.", kind="config", retryable=False)
        text = ctx.render(ctx.config["input"])
        text = text if isinstance(text, str) else json.dumps(text)
        try:
            run, _ = run_start(
                agent=agent,
                user=ctx.user,
                input=text,
                variables=ctx.render(ctx.config.get("variables") or {}),
                metadata={"workflow_execution": str(ctx.execution.pk), "workflow_step": str(ctx.step.pk)},
                idempotency_key=ctx.idempotency_key,
            )
        except AgentNotDeployed as exc:
            raise StepError(str(exc.detail), kind="config", retryable=False) from exc
        run = run_execute(run=run)
        usage = {
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "cost_usd": run.cost_usd,
        }
        if run.status != RunStatus.SUCCEEDED:
            raise StepError(
                f"The agent run ended {run.status} ({run.stop_reason}): {run.error}", kind="agent"
            )
        output = run.output_json if run.output_json is not None else run.output
        return Done({"output": output, "run_id": str(run.pk)}, **usage)


class ToolNode(NodeHandler):
    type = "tool"
    description = "Execute a deployed tool with an arguments template; the output is its result."
    inline = True
    config_schema = {
        "type": "object",
        "required": ["tool_id"],
        "additionalProperties": False,
        "properties": {"tool_id": UUID, "arguments": {"type": ["object", "string"]}},
    }
    template_fields = ("arguments",)

    def check(self, config, *, owner, workflow=None) -> None:
        from tools.models import Tool

        _usable(Tool, config["tool_id"], owner, "tool", "tool_id")
        super().check(config, owner=owner, workflow=workflow)

    def step_refs(self, config) -> frozenset[str] | None:
        return expressions.step_refs(config)

    def run(self, ctx: StepContext) -> Done:
        from agentmesh.core.features import FeatureUnavailable
        from tools.models import CallerType, ExecutionStatus, Tool, ToolExecution
        from tools.services import ToolArgumentsInvalid, ToolNotDeployed, tool_execute

        tool = Tool.objects.filter(pk=ctx.config["tool_id"]).first()
        if tool is None:
            raise StepError("The tool no longer exists.", kind="config", retryable=False)
        caller_ref = f"{ctx.step.pk}{ctx.key_suffix}"[:64]
        done = ToolExecution.objects.filter(
            tool=tool,
            caller_type=CallerType.WORKFLOW_STEP,
            caller_ref=caller_ref,
            status=ExecutionStatus.SUCCEEDED,
        ).first()
        if done is not None:  # this attempt already ran the tool (a re-dispatched step)
            return Done(done.result)
        arguments = ctx.render(ctx.config.get("arguments") or {})
        try:
            execution = tool_execute(
                tool=tool,
                arguments=arguments,
                actor=ctx.user,
                caller_type=CallerType.WORKFLOW_STEP,
                caller_ref=caller_ref,
                require_deployed=True,
                timeout_cap=max(ctx.remaining(), 0.1),
                idempotency_key=ctx.idempotency_key,
            )
        except ToolArgumentsInvalid as exc:
            field, messages = next(iter(exc.detail.items()))
            raise StepError(f"{field}: {messages[0]}", kind="invalid_arguments", retryable=False) from exc
        except (ToolNotDeployed, *FeatureUnavailable) as exc:
            raise StepError(str(exc.detail), kind="config", retryable=False) from exc
        if execution.status != ExecutionStatus.SUCCEEDED:
            kind = "timeout" if execution.status == ExecutionStatus.TIMED_OUT else "tool"
            raise StepError(f"The tool call failed: {execution.error}", kind=kind)
        return Done(execution.result)


class LLMNode(NodeHandler):
    type = "llm"
    description = "One model call with a prompt (and an optional system prompt and JSON Schema answer)."
    inline = True
    config_schema = {
        "type": "object",
        "required": ["model_id", "prompt"],
        "additionalProperties": False,
        "properties": {
            "model_id": UUID,
            "prompt": {"type": "string", "minLength": 1, "maxLength": 100_000},
            "system": {"type": "string", "maxLength": 100_000},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "max_tokens": {"type": "integer", "minimum": 1},
            "json_schema": {"type": "object"},
        },
    }
    template_fields = ("prompt", "system")

    def check(self, config, *, owner, workflow=None) -> None:
        from masterdata.models import ModelConfig

        _usable(ModelConfig, config["model_id"], owner, "model config", "model_id")
        super().check(config, owner=owner, workflow=workflow)

    def step_refs(self, config) -> frozenset[str] | None:
        return expressions.step_refs(config)

    def run(self, ctx: StepContext) -> Done:
        from agents.llm.base import ChatRequest, LLMError
        from agents.llm.client import chat
        from masterdata.models import ModelConfig

        model = ModelConfig.objects.filter(pk=ctx.config["model_id"]).first()
        if model is None:
            raise StepError("The model config no longer exists.", kind="config", retryable=False)
        messages = []
        if ctx.config.get("system"):
            messages.append({"role": "system", "content": str(ctx.render(ctx.config["system"]))})
        messages.append({"role": "user", "content": str(ctx.render(ctx.config["prompt"]))})
        schema = ctx.config.get("json_schema")
        response_format = (
            {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}} if schema else None
        )
        request = ChatRequest(
            messages=messages,
            response_format=response_format,
            temperature=ctx.config.get("temperature"),
            max_tokens=ctx.config.get("max_tokens"),
            timeout=max(ctx.remaining(), 0.1),
        )
        try:
            response = chat(model, request, actor=ctx.user)
        except LLMError as exc:
            raise StepError(str(exc), kind=f"llm_{exc.kind}", retryable=exc.kind != "bad_request") from exc
        output = response.content
        if schema and output:
            try:
                output = json.loads(output)
            except ValueError as exc:
                raise StepError("The model's answer is not JSON.", kind="llm_response") from exc
        return Done(
            {"text": response.content, "output": output, "model": response.model},
            input_tokens=response.usage.input_tokens,
            output_tokens=response.usage.output_tokens,
            cost_usd=response.cost_usd,
        )


__all__ = ["AgentNode", "LLMNode", "ToolNode", "expressions"]

for handler in (AgentNode(), ToolNode(), LLMNode()):
    registry.register(handler)
