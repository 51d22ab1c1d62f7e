"""The one choke point where an agent run's limits are enforced.

`Budget` carries the effective limits of the deployed version and what the run has used;
`check()` runs before every model call and `check_tool_call()` before every tool call. A
limit raises `LimitReached` with the run's stop_reason; the loop ends the run `incomplete`
and keeps what it produced so far.
"""

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from agents.models import StopReason


class LimitReached(Exception):
    def __init__(self, stop_reason: str, message: str):
        super().__init__(message)
        self.stop_reason = stop_reason


@dataclass
class Budget:
    limits: dict[str, Any]
    default_timeout: float
    default_max_turns: int
    defaults: dict[str, Any] = field(default_factory=dict)  # limits the constraints leave unset
    started: float = field(default_factory=time.monotonic)
    turns: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal("0")
    spent_today_before: Decimal = Decimal("0")  # the agent's cost today before this run

    def _limit(self, name: str):
        value = self.limits.get(name)
        return self.defaults.get(name) if value is None else value

    @property
    def max_turns(self) -> int:
        return self._limit("max_turns") or self.default_max_turns

    @property
    def timeout(self) -> float:
        return float(self._limit("timeout_seconds") or self.default_timeout)

    def remaining_seconds(self) -> float:
        return max(0.0, self.timeout - (time.monotonic() - self.started))

    def check(self, *, cancelled: bool = False) -> None:
        """Before each model call."""
        if cancelled:
            raise LimitReached(StopReason.CANCELLED, "The run was cancelled.")
        if self.remaining_seconds() <= 0:
            raise LimitReached(StopReason.TIMEOUT, f"The run exceeded {self.timeout:g}s.")
        if self.turns >= self.max_turns:
            raise LimitReached(StopReason.MAX_TURNS, f"The run reached {self.max_turns} turns.")
        self.check_tokens_and_cost()

    def check_tokens_and_cost(self) -> None:
        max_in, max_out = self._limit("max_input_tokens"), self._limit("max_output_tokens")
        if max_in is not None and self.input_tokens >= max_in:
            raise LimitReached(
                StopReason.TOKEN_BUDGET, f"The run used {self.input_tokens} of {max_in} input tokens."
            )
        if max_out is not None and self.output_tokens >= max_out:
            raise LimitReached(
                StopReason.TOKEN_BUDGET, f"The run used {self.output_tokens} of {max_out} output tokens."
            )
        per_run = self._limit("max_cost_usd_per_run")
        if per_run is not None and self.cost >= Decimal(str(per_run)):
            raise LimitReached(StopReason.COST_LIMIT, f"The run cost ${self.cost} (limit ${per_run}).")
        per_day = self._limit("max_cost_usd_per_day")
        if per_day is not None and self.spent_today_before + self.cost >= Decimal(str(per_day)):
            raise LimitReached(StopReason.COST_LIMIT, f"The agent reached its daily budget of ${per_day}.")

    def tool_allowed(self, name: str) -> bool:
        allowed, denied = self._limit("allowed_tools"), self._limit("denied_tools") or []
        return name not in denied and (allowed is None or name in allowed)

    def check_tool_call(self, name: str) -> None:
        """Before each tool call."""
        if not self.tool_allowed(name):
            raise LimitReached(StopReason.TOOL_POLICY, f"The tool {name} is not allowed for this agent.")
        max_calls = self._limit("max_tool_calls")
        if max_calls is not None and self.tool_calls >= max_calls:
            raise LimitReached(StopReason.MAX_TOOL_CALLS, f"The run reached {max_calls} tool calls.")
        if self.remaining_seconds() <= 0:
            raise LimitReached(StopReason.TIMEOUT, f"The run exceeded {self.timeout:g}s.")

    def check_input(self, texts: list[str]) -> None:
        """The content policy on what the caller sends."""
        max_chars = self._limit("max_input_chars")
        total = sum(len(t) for t in texts)
        if max_chars is not None and total > max_chars:
            raise LimitReached(
                StopReason.CONTENT_POLICY, f"The input has {total} characters (limit {max_chars})."
            )
        lowered = " ".join(texts).lower()
        for term in self._limit("blocked_terms") or []:
            if term.lower() in lowered:
                raise LimitReached(StopReason.CONTENT_POLICY, "The input contains a blocked term.")

    def record_usage(self, input_tokens: int, output_tokens: int, cost: Decimal) -> None:
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cost += cost

    def max_tokens_for_next_call(self, requested: int | None) -> int | None:
        """Never ask the model for more output than the budget has left."""
        max_out = self._limit("max_output_tokens")
        if max_out is None:
            return requested
        left = max(1, max_out - self.output_tokens)
        return min(requested, left) if requested else left
