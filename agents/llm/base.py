"""The provider-neutral chat interface: the Chat Completions shape, whatever the provider.

Messages are Chat Completions dicts:
  {"role": "system" | "user" | "assistant" | "tool", "content": str | None,
   "tool_calls": [{"id", "type": "function", "function": {"name", "arguments": <JSON text>}}],
   "tool_call_id": str}                      # on role "tool"
Tools are Chat Completions function tools:
  {"type": "function", "function": {"name", "description", "parameters": <JSON Schema>}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


@dataclass
class ToolCallRequest:
    id: str
    name: str
    arguments: str  # JSON text exactly as the model produced it (may be invalid JSON)


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class ChatRequest:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    # None (text), or {"type": "json_schema", "json_schema": {"name", "schema", "strict"?}}
    response_format: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    timeout: float = 60.0  # seconds for the whole call, retries included
    parallel_tool_calls: bool = True


@dataclass
class ChatResponse:
    content: str | None
    tool_calls: list[ToolCallRequest]
    finish_reason: str  # "stop" | "tool_calls" | "length" | "content_filter" | …
    usage: Usage
    model: str  # the model name that answered
    model_config_id: Any = None  # the ModelConfig that answered (the fallback's when used)
    provider: str = ""
    cost_usd: Decimal = Decimal("0")
    attempts: int = 1
    fallback_used: bool = False

    def as_message(self) -> dict[str, Any]:
        """The assistant message to append to the conversation."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return message


@dataclass
class ChatDelta:
    """One streamed piece. Text arrives as `content`; a finished stream ends with one delta
    whose `response` is the complete ChatResponse (tool calls assembled, usage, cost)."""

    content: str = ""
    response: ChatResponse | None = None


class LLMError(Exception):
    """A model call that failed for good (after retries and fallbacks).

    kind: "timeout" | "rate_limited" | "upstream" | "refused" (SSRF guard) | "auth" |
          "bad_request" | "circuit_open" | "config"
    """

    def __init__(self, message: str, *, kind: str = "upstream", status: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.status = status
