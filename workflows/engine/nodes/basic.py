"""Nodes that compute in place: condition, transform, output, and the waiting ones: delay, approval."""

from datetime import timedelta

from django.utils import timezone

from .. import expressions
from .base import DefinitionInvalid, Done, NodeHandler, StepContext, StepError, Wait, registry

LABEL = {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"}


class ConditionNode(NodeHandler):
    type = "condition"
    description = "if / elif / else: the first branch whose `when` holds is taken (else `default`)."
    pure = True
    config_schema = {
        "type": "object",
        "required": ["branches"],
        "additionalProperties": False,
        "properties": {
            "branches": {
                "type": "array",
                "minItems": 1,
                "maxItems": 50,
                "items": {
                    "type": "object",
                    "required": ["label", "when"],
                    "additionalProperties": False,
                    "properties": {"label": LABEL, "when": {"type": ["string", "boolean"]}},
                },
            },
            "default": LABEL,
        },
    }

    def check(self, config, *, owner, workflow=None) -> None:
        seen = set()
        for index, branch in enumerate(config["branches"]):
            if branch["label"] in seen or branch["label"] == config.get("default", "else"):
                raise DefinitionInvalid("Branch labels must be unique.", field=f"branches[{index}].label")
            seen.add(branch["label"])
            if problem := expressions.check(branch["when"]):
                raise DefinitionInvalid(problem, field=f"branches[{index}].when")

    def branches(self, config) -> set[str]:
        return {b["label"] for b in config.get("branches", [])} | {config.get("default", "else")}

    def step_refs(self, config) -> frozenset[str] | None:
        return expressions.step_refs(config)

    def run(self, ctx: StepContext) -> Done:
        for branch in ctx.config["branches"]:
            try:
                holds = expressions.truthy(branch["when"], ctx.variables)
            except expressions.ExpressionError as exc:
                raise StepError(str(exc), kind="expression", retryable=False) from exc
            if holds:
                return Done({"branch": branch["label"]})
        return Done({"branch": ctx.config.get("default", "else")})


class TransformNode(NodeHandler):
    type = "transform"
    description = "Build a value with a template (any JSON with expressions) or a JMESPath query."
    pure = True
    inline = True
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "template": {},
            "jmespath": {"type": "string", "maxLength": 10_000},
            "source": {"description": "What the JMESPath query reads (default: the whole context)."},
        },
        "oneOf": [{"required": ["template"]}, {"required": ["jmespath"]}],
    }

    def check(self, config, *, owner, workflow=None) -> None:
        if "jmespath" in config and (problem := expressions.check_jmespath(config["jmespath"])):
            raise DefinitionInvalid(problem, field="jmespath")
        for name in ("template", "source"):
            if name in config and (problem := expressions.check(config[name])):
                raise DefinitionInvalid(problem, field=name)

    def step_refs(self, config) -> frozenset[str] | None:
        if "jmespath" in config and "source" not in config:
            return None  # the query reads the whole context
        return expressions.step_refs(config)

    def run(self, ctx: StepContext) -> Done:
        config = ctx.config
        if "jmespath" in config:
            source = ctx.render(config["source"]) if "source" in config else ctx.variables
            try:
                return Done(expressions.search(config["jmespath"], source))
            except expressions.ExpressionError as exc:
                raise StepError(str(exc), kind="expression", retryable=False) from exc
        return Done(ctx.render(config["template"]))


class OutputNode(NodeHandler):
    type = "output"
    description = "A value of the workflow's result (used when the definition has no `outputs` mapping)."
    pure = True
    config_schema = {
        "type": "object",
        "required": ["value"],
        "additionalProperties": False,
        "properties": {"value": {}},
    }
    template_fields = ("value",)

    def step_refs(self, config) -> frozenset[str] | None:
        return expressions.step_refs(config)

    def run(self, ctx: StepContext) -> Done:
        return Done(ctx.render(ctx.config["value"]))


class DelayNode(NodeHandler):
    type = "delay"
    description = "Wait a number of seconds (no worker is held while waiting)."
    config_schema = {
        "type": "object",
        "required": ["seconds"],
        "additionalProperties": False,
        "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 30 * 24 * 3600}},
    }

    def step_refs(self, config) -> frozenset[str] | None:
        return frozenset()

    def run(self, ctx: StepContext) -> Done | Wait:
        seconds = float(ctx.config["seconds"])
        if seconds <= 0:
            return Done({"waited_seconds": 0})
        return Wait("delay", wake_at=timezone.now() + timedelta(seconds=seconds), state={"seconds": seconds})


class ApprovalNode(NodeHandler):
    type = "approval"
    description = (
        "Pause until a person approves or rejects through the API (rejection or timeout fails the step)."
    )
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "message": {"type": "string", "maxLength": 10_000},
            "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 30 * 24 * 3600},
        },
    }
    template_fields = ("message",)

    def step_refs(self, config) -> frozenset[str] | None:
        return expressions.step_refs(config)

    def run(self, ctx: StepContext) -> Wait:
        message = ctx.render(ctx.config.get("message", ""))
        timeout = ctx.config.get("timeout_seconds")
        wake_at = timezone.now() + timedelta(seconds=timeout) if timeout else None
        return Wait("approval", wake_at=wake_at, state={"message": str(message)})


for handler in (ConditionNode(), TransformNode(), OutputNode(), DelayNode(), ApprovalNode()):
    registry.register(handler)
