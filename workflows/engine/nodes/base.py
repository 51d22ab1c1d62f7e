"""The node handler interface: one class per node type, registered in `registry`.

A handler knows its config schema, checks a config beyond the schema on save (references the
owner may use, expressions that parse) and runs one step attempt. It returns `Done` (the
output, with usage), or `Wait` (an approval, a delay or a sub-workflow the step waits for),
or raises `StepError`. It never touches the execution's state: the scheduler does that.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .. import expressions

if TYPE_CHECKING:
    from workflows.models import StepExecution, WorkflowExecution


class DefinitionInvalid(ValueError):
    """A node config that cannot run; `field` is a path under the node's config ("agent_id")."""

    def __init__(self, message: str, *, field: str = ""):
        super().__init__(message)
        self.field = field


class StepError(Exception):
    """A failed attempt. `retryable=False` skips the node's remaining attempts."""

    def __init__(self, message: str, *, kind: str = "error", retryable: bool = True):
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


@dataclass
class Done:
    output: Any = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal("0")
    state: dict = field(default_factory=dict)


@dataclass
class Wait:
    kind: str  # approval | delay | workflow
    wake_at: datetime | None = None  # a delay ends / an approval times out
    state: dict = field(default_factory=dict)
    output: Any = None


@dataclass
class StepContext:
    execution: WorkflowExecution
    step: StepExecution
    node: dict
    variables: dict  # inputs, steps, and item/index/loop inside map and loop bodies
    timeout: float  # seconds this attempt may take
    started: float = field(default_factory=time.monotonic)
    key_suffix: str = ""  # distinguishes map items / loop iterations in idempotency keys

    @property
    def config(self) -> dict:
        return self.node.get("config") or {}

    @property
    def user(self):
        return self.execution.user or self.execution.workflow.owner

    @property
    def idempotency_key(self) -> str:
        return f"{self.step.idempotency_key}{self.key_suffix}"[:200]

    def remaining(self) -> float:
        return max(0.0, self.timeout - (time.monotonic() - self.started))

    def render(self, value: Any, variables: dict | None = None) -> Any:
        try:
            return expressions.render(value, self.variables if variables is None else variables)
        except expressions.ExpressionError as exc:
            raise StepError(str(exc), kind="expression", retryable=False) from exc

    def child(self, node: dict, *, variables: dict, key_suffix: str) -> StepContext:
        """A context for an inline body node (map item, loop iteration)."""
        return StepContext(
            execution=self.execution,
            step=self.step,
            node=node,
            variables=variables,
            timeout=self.remaining(),
            started=time.monotonic(),
            key_suffix=self.key_suffix + key_suffix,
        )


class NodeHandler:
    type: str = ""
    description: str = ""
    config_schema: dict = {"type": "object"}
    #: may be the body of a map or loop node (runs to completion within the step)
    inline: bool = False
    #: computes its output from the run's data alone (no I/O, no waiting, quick): the scheduler
    #: evaluates it where the graph advances, under the run's lock, instead of sending it to a
    #: worker (workflow logic in place, work in workers)
    pure: bool = False
    #: expressions in the config, checked on save (paths into the config)
    template_fields: tuple[str, ...] = ()

    def check(self, config: dict, *, owner, workflow=None) -> None:
        """Checks beyond the JSON Schema on save; raise DefinitionInvalid."""
        for name in self.template_fields:
            if name in config and (problem := expressions.check(config[name])):
                raise DefinitionInvalid(problem, field=name)

    def branches(self, config: dict) -> set[str]:
        """Branch labels the node chooses between (edges out of it carry them)."""
        return set()

    def step_refs(self, config: dict) -> frozenset[str] | None:
        """The node ids whose results a step of this node reads; None: any of them. A step
        gets `steps.<id>` in its variables only for these. The default is None, since a handler
        may read `ctx.variables` directly; one that reads steps only through the templates of
        its config returns `expressions.step_refs(config)`."""
        return None

    def run(self, ctx: StepContext) -> Done | Wait:
        raise NotImplementedError


class NodeRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, NodeHandler] = {}

    def register(self, handler: NodeHandler) -> NodeHandler:
        self._handlers[handler.type] = handler
        return handler

    def get(self, type_name: str) -> NodeHandler:
        try:
            return self._handlers[type_name]
        except KeyError:
            raise LookupError(f"Unknown node type {type_name!r}.") from None

    def __contains__(self, type_name: str) -> bool:
        return type_name in self._handlers

    def types(self) -> list[str]:
        return sorted(self._handlers)


registry = NodeRegistry()
