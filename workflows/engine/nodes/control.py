"""Nodes that run other nodes: map (a body per item), loop (a body until a condition), and
workflow (a sub-workflow as a child execution the step waits for)."""

import contextvars
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import connections

from agentmesh.core.exceptions import ServiceValidationError
from agentmesh.core.permissions import has_object_action
from tools.executors.base import is_uuid

from .. import expressions
from .base import DefinitionInvalid, Done, NodeHandler, StepContext, StepError, Wait, registry

BODY = {
    "type": "object",
    "required": ["type"],
    "additionalProperties": False,
    "properties": {"type": {"type": "string"}, "config": {"type": "object"}},
}


SUB_WORKFLOW = {
    "type": "object",
    "required": ["workflow_id"],
    "additionalProperties": False,
    "properties": {
        "workflow_id": {"type": "string", "format": "uuid"},
        "inputs": {"type": ["object", "string"]},
        "version": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
    },
}


def _check_body(config: dict, *, owner, workflow) -> None:
    from ..graph import check_node_config

    body = config["node"]
    if body.get("type") == MapNode.type and "workflow" in (body.get("config") or {}):
        raise DefinitionInvalid(
            "A body runs within its step: it may not map over a sub-workflow.", field="node"
        )
    try:
        check_node_config(config["node"], owner=owner, workflow=workflow, field="node", inline_only=True)
    except ServiceValidationError as exc:
        field, messages = next(iter(exc.detail.items()))
        raise DefinitionInvalid(str(messages[0]), field=field) from exc


def _check_sub_workflow(config: dict, *, owner, workflow, field: str = "") -> None:
    """The sub-workflow exists, the owner may use it, it is not the caller, the version exists."""
    from workflows.models import Workflow

    prefix = f"{field}." if field else ""
    target = (
        Workflow.objects.filter(pk=config["workflow_id"]).first() if is_uuid(config["workflow_id"]) else None
    )
    if target is None or not has_object_action(owner, target, "use"):
        raise DefinitionInvalid("No workflow with this id that you may use.", field=f"{prefix}workflow_id")
    if workflow is not None and target.pk == workflow.pk:
        raise DefinitionInvalid("A workflow may not call itself.", field=f"{prefix}workflow_id")
    if "version" in config and not target.versions.filter(version=config["version"]).exists():
        raise DefinitionInvalid("The workflow has no such version.", field=f"{prefix}version")
    if "inputs" in config and (problem := expressions.check(config["inputs"])):
        raise DefinitionInvalid(problem, field=f"{prefix}inputs")


def _run_body(ctx: StepContext, variables: dict, suffix: str) -> Done:
    body = ctx.config["node"]
    child = ctx.child({"id": ctx.node["id"], **body}, variables=variables, key_suffix=suffix)
    result = registry.get(body["type"]).run(child)
    if not isinstance(result, Done):  # bodies are inline types: they never wait
        raise StepError("A body node may not wait.", kind="config", retryable=False)
    return result


def _check_body_or_sub_workflow(config: dict, *, owner, workflow, purpose: str) -> None:
    """A map or loop names exactly one of a body `node` and a sub-`workflow`: check that one."""
    if ("node" in config) == ("workflow" in config):
        raise DefinitionInvalid(f"Give either a body `node` or a sub-`workflow` {purpose}.", field="node")
    if "workflow" in config:
        _check_sub_workflow(config["workflow"], owner=owner, workflow=workflow, field="workflow")
    else:
        _check_body(config, owner=owner, workflow=workflow)


def _body_refs(config: dict) -> frozenset[str] | None:
    """What the node's own templates and its body read."""
    own = expressions.step_refs({key: value for key, value in config.items() if key != "node"})
    body = config.get("node")
    if body is None:  # a map over a sub-workflow: its inputs template is among the own ones
        return own
    inner = registry.get(body["type"]).step_refs(body.get("config") or {})
    return None if own is None or inner is None else own | inner


def _add(total: Done, part: Done) -> None:
    total.input_tokens += part.input_tokens
    total.output_tokens += part.output_tokens
    total.cost_usd += part.cost_usd


class MapNode(NodeHandler):
    type = "map"
    description = (
        "Run a body node, or a sub-workflow, for each item of a list (at most `concurrency` at "
        "once); results in order."
    )
    inline = True
    config_schema = {
        "type": "object",
        "required": ["items"],
        "additionalProperties": False,
        "properties": {
            "items": {"type": ["string", "array"]},
            "node": BODY,
            "workflow": SUB_WORKFLOW,
            "concurrency": {"type": "integer", "minimum": 1, "maximum": 32},
        },
    }
    template_fields = ("items",)

    def check(self, config, *, owner, workflow=None) -> None:
        super().check(config, owner=owner, workflow=workflow)
        _check_body_or_sub_workflow(config, owner=owner, workflow=workflow, purpose="to run per item")

    def step_refs(self, config) -> frozenset[str] | None:
        return _body_refs(config)

    def run(self, ctx: StepContext) -> Done:
        items = ctx.render(ctx.config["items"])
        if not isinstance(items, list):
            raise StepError(
                f"items must be a list, not {type(items).__name__}.", kind="expression", retryable=False
            )
        if len(items) > settings.WORKFLOWS_MAX_MAP_ITEMS:
            raise StepError(
                f"At most {settings.WORKFLOWS_MAX_MAP_ITEMS} items.", kind="limit", retryable=False
            )

        def variables(index: int) -> dict:
            return {**ctx.variables, "item": items[index], "index": index}

        def one(index: int) -> Done:
            return _run_body(ctx, variables(index), f":{index}")

        concurrency = min(ctx.config.get("concurrency", 1), max(len(items), 1))
        if "workflow" in ctx.config:
            template = ctx.config["workflow"].get("inputs") or {}
            inputs = [ctx.render(template, variables(index)) for index in range(len(items))]
            return self._wait_for_workflows(inputs, concurrency)
        if concurrency <= 1:
            results = [one(i) for i in range(len(items))]
        else:
            results = self._parallel(one, len(items), concurrency)
        total = Done([r.output for r in results])
        for result in results:
            _add(total, result)
        return total

    @staticmethod
    def _wait_for_workflows(inputs: list, concurrency: int) -> Done | Wait:
        """The scheduler starts a child execution per item (`concurrency` at a time) as the step
        waits, and ends the step when the last one ends."""
        if not inputs:
            return Done([])
        return Wait("map", state={"map_inputs": inputs, "children": [], "map_concurrency": concurrency})

    @staticmethod
    def _parallel(one, count: int, concurrency: int) -> list[Done]:
        def call(index: int) -> Done:
            try:
                return one(index)
            finally:
                connections.close_all()  # this thread's connections

        context = contextvars.copy_context()
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="wf-map") as pool:
            futures = [pool.submit(context.copy().run, call, i) for i in range(count)]
            return [future.result() for future in futures]  # the first failure (by index) raises


class LoopNode(NodeHandler):
    type = "loop"
    description = (
        "Run a body node, or a sub-workflow, again and again until `until` holds (it sees "
        "loop.index, loop.output and loop.outputs), at most max_iterations times."
    )
    inline = True
    config_schema = {
        "type": "object",
        "required": ["until"],
        "additionalProperties": False,
        "properties": {
            "node": BODY,
            "workflow": SUB_WORKFLOW,
            "until": {"type": ["string", "boolean"]},
            "max_iterations": {"type": "integer", "minimum": 1},
            "on_exhausted": {"enum": ["fail", "succeed"]},
        },
    }
    template_fields = ("until",)

    def check(self, config, *, owner, workflow=None) -> None:
        super().check(config, owner=owner, workflow=workflow)
        if config.get("max_iterations", 1) > settings.WORKFLOWS_MAX_LOOP_ITERATIONS:
            raise DefinitionInvalid(
                f"At most {settings.WORKFLOWS_MAX_LOOP_ITERATIONS}.", field="max_iterations"
            )
        _check_body_or_sub_workflow(config, owner=owner, workflow=workflow, purpose="to repeat")

    def step_refs(self, config) -> frozenset[str] | None:
        return _body_refs(config)

    def run(self, ctx: StepContext) -> Done | Wait:
        if "workflow" in ctx.config:
            # the scheduler runs one child execution per iteration as the step waits
            return Wait("loop", state={"children": [], "loop_outputs": []})
        limit = ctx.config.get("max_iterations", settings.WORKFLOWS_MAX_LOOP_ITERATIONS)
        outputs: list = []
        total = Done()
        for index in range(limit):
            loop = {"index": index, "output": outputs[-1] if outputs else None, "outputs": list(outputs)}
            result = _run_body(ctx, {**ctx.variables, "loop": loop}, f":{index}")
            _add(total, result)
            outputs.append(result.output)
            loop = {"index": index, "output": result.output, "outputs": list(outputs)}
            try:
                holds = expressions.truthy(ctx.config["until"], {**ctx.variables, "loop": loop})
            except expressions.ExpressionError as exc:
                raise StepError(str(exc), kind="expression", retryable=False) from exc
            if holds:
                total.output = {"iterations": index + 1, "output": result.output, "outputs": outputs}
                return total
        if ctx.config.get("on_exhausted", "fail") == "fail":
            raise StepError(f"The loop's condition did not hold after {limit} iterations.", kind="limit")
        total.output = {"iterations": limit, "output": outputs[-1] if outputs else None, "outputs": outputs}
        return total


class WorkflowNode(NodeHandler):
    type = "workflow"
    description = "Run another workflow as a child execution (depth-limited) and wait for its outputs."
    config_schema = SUB_WORKFLOW

    def check(self, config, *, owner, workflow=None) -> None:
        _check_sub_workflow(config, owner=owner, workflow=workflow)

    def step_refs(self, config) -> frozenset[str] | None:
        return expressions.step_refs(config)

    def run(self, ctx: StepContext) -> Wait:
        from workflows.engine.scheduler import child_execution_start

        child = child_execution_start(
            execution=ctx.execution,
            step=ctx.step,
            config=ctx.config,
            inputs=ctx.render(ctx.config.get("inputs") or {}),
            idempotency_key=ctx.idempotency_key,
        )
        return Wait("workflow", state={"child_execution_id": str(child.pk)})


for handler in (MapNode(), LoopNode(), WorkflowNode()):
    registry.register(handler)
