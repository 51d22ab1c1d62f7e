"""Anthropic's Messages API through the official `anthropic` SDK.

Mapping from the internal (Chat Completions) shape:
  system messages              -> `system` (joined with blank lines)
  assistant content/tool_calls -> assistant `text` and `tool_use` blocks (arguments parsed to `input`)
  role "tool"                  -> `tool_result` blocks of a user message; consecutive tool results (and a
                                  user message right after them) merge into one user message, results first
  tools                        -> {"name", "description", "input_schema"}
  parallel_tool_calls=False    -> tool_choice {"type": "auto", "disable_parallel_tool_use": true}
  temperature / top_p          -> sent only when set, temperature winning over top_p (see _params)
  response_format json_schema  -> output_config {"format": {"type": "json_schema", "schema"}}
  stop_reason end_turn/stop_sequence/tool_use/max_tokens/refusal
                               -> finish_reason stop/stop/tool_calls/length/content_filter
max_tokens is required by Anthropic: 1024 when the request has none. Input tokens include cache reads
and cache writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
from django.conf import settings

from agentmesh.core.safe_http import safe_httpx2_client
from agents.llm.base import ChatDelta, ChatRequest, ChatResponse, ToolCallRequest, Usage

from . import ProviderError, translate_sdk_error

DEFAULT_MAX_TOKENS = 1024
DEFAULT_BASE_URL = "https://api.anthropic.com"
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}


def _timeout(seconds: float) -> httpx2.Timeout:
    seconds = max(seconds, 0.01)
    return httpx2.Timeout(seconds, connect=min(settings.SAFE_HTTP_CONNECT_TIMEOUT, seconds))


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(
        part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
    )


def _image_block(part: dict) -> dict | None:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        return None
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url[5:].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _content_blocks(content: Any) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and part.get("text"):
            blocks.append({"type": "text", "text": part["text"]})
        elif part.get("type") == "image_url" and (block := _image_block(part)):
            blocks.append(block)
    return blocks


def _tool_input(arguments: str) -> dict:
    """The model's JSON arguments as an object (Anthropic requires one)."""
    if not arguments or not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        return {"_raw_arguments": arguments}
    return value if isinstance(value, dict) else {"value": value}


def to_anthropic(messages: list[dict]) -> tuple[str, list[dict]]:
    """(system, messages) for the Messages API from Chat Completions messages."""
    system: list[str] = []
    turns: list[tuple[str, list[dict]]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            if text := _text_of(message.get("content")):
                system.append(text)
            continue
        if role == "tool":
            content = message.get("content")
            block = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id") or "",
                "content": content if isinstance(content, str) else _content_blocks(content),
            }
            role, blocks = "user", [block]
        elif role == "assistant":
            blocks = _content_blocks(message.get("content"))
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id") or "",
                        "name": function.get("name") or "",
                        "input": _tool_input(function.get("arguments") or ""),
                    }
                )
        else:
            role, blocks = "user", _content_blocks(message.get("content"))
        if not blocks:
            continue  # Anthropic refuses empty content
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    result = []
    for role, blocks in turns:
        if role == "user":  # tool results must come first in their user message
            blocks = sorted(blocks, key=lambda b: b["type"] != "tool_result")
        if len(blocks) == 1 and blocks[0]["type"] == "text":
            result.append({"role": role, "content": blocks[0]["text"]})
        else:
            result.append({"role": role, "content": blocks})
    return "\n\n".join(system), result


def _tools(tools: list[dict]) -> list[dict]:
    result = []
    for tool in tools:
        function = tool.get("function") or tool
        spec = {
            "name": function["name"],
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            spec["description"] = function["description"]
        result.append(spec)
    return result


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    input_tokens = (
        (getattr(usage, "input_tokens", 0) or 0)
        + (getattr(usage, "cache_creation_input_tokens", 0) or 0)
        + (getattr(usage, "cache_read_input_tokens", 0) or 0)
    )
    return Usage(input_tokens, getattr(usage, "output_tokens", 0) or 0)


class AnthropicAdapter:
    needs_api_key = True

    def describe(self) -> str:
        return "Anthropic Messages API."

    def _client(self, config: Any, api_key: str | None, timeout: float) -> anthropic.Anthropic:
        if not api_key:
            raise ProviderError(
                f"Model {config.name} has no API key (Anthropic requires one).", kind="config"
            )
        http_client = safe_httpx2_client(
            timeout=_timeout(timeout),
            follow_redirects=False,
            max_response_bytes=settings.SAFE_HTTP_MAX_RESPONSE_BYTES,
        )
        try:
            return anthropic.Anthropic(
                api_key=api_key,  # explicit: no ANTHROPIC_* environment or profile credentials
                base_url=config.base_url or DEFAULT_BASE_URL,
                max_retries=0,
                timeout=_timeout(timeout),
                http_client=http_client,
                open_telemetry=False,  # our own `chat` span records the call, without content
            )
        except (anthropic.AnthropicError, ValueError, TypeError) as exc:
            http_client.close()
            raise ProviderError(f"Cannot configure model {config.name}: {exc}", kind="config") from exc

    def _params(self, config: Any, request: ChatRequest) -> dict[str, Any]:
        system, messages = to_anthropic(request.messages)
        params: dict[str, Any] = {
            "model": config.model_name,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": messages,
        }
        if system:
            params["system"] = system
        if request.tools:
            params["tools"] = _tools(request.tools)
            if not request.parallel_tool_calls:
                params["tool_choice"] = {"type": "auto", "disable_parallel_tool_use": True}
        # anthropic 1.x+ dropped the sampling arguments from messages.create() (the API still takes them on
        # models that support them): they go in extra_body, only when set, and never both at once (Claude 4
        # models refuse temperature together with top_p; temperature wins).
        if request.temperature is not None:
            params["extra_body"] = {"temperature": request.temperature}
        elif request.top_p is not None:
            params["extra_body"] = {"top_p": request.top_p}
        response_format = request.response_format or {}
        if response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
            params["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        stop = (config.default_parameters or {}).get("stop")
        if stop:
            params["stop_sequences"] = list(stop)
        return params

    def _label(self, config: Any) -> str:
        return f"The Anthropic endpoint of {config.name}"

    def _error(self, exc: Exception, config: Any) -> Exception:
        return translate_sdk_error(exc, anthropic, self._label(config)) or exc

    def chat(self, config: Any, request: ChatRequest, api_key: str | None) -> ChatResponse:
        client = self._client(config, api_key, request.timeout)
        try:
            message = client.messages.create(
                **self._params(config, request), timeout=_timeout(request.timeout)
            )
        except Exception as exc:
            error = self._error(exc, config)
            if error is exc:
                raise
            raise error from None
        finally:
            client.close()
        text, tool_calls = [], []
        for block in message.content:
            if block.type == "text":
                text.append(block.text)
            elif block.type == "tool_use":
                tool_calls.append(
                    ToolCallRequest(id=block.id, name=block.name, arguments=json.dumps(block.input))
                )
        return ChatResponse(
            content="".join(text) if text else None,
            tool_calls=tool_calls,
            finish_reason=FINISH_REASONS.get(message.stop_reason or "", message.stop_reason or "stop"),
            usage=_usage(message.usage),
            model=message.model or config.model_name,
            provider=config.provider,
        )

    def stream(self, config: Any, request: ChatRequest, api_key: str | None) -> Iterator[ChatDelta]:
        client = self._client(config, api_key, request.timeout)
        stream = None
        text: list[str] = []
        blocks: dict[int, dict[str, Any]] = {}  # index -> tool_use {"id", "name", "json": [...], "input"}
        input_usage: Any = None
        output_tokens = 0
        model, stop_reason = config.model_name, None
        try:
            stream = client.messages.create(
                **self._params(config, request), stream=True, timeout=_timeout(request.timeout)
            )
            for event in stream:
                kind = event.type
                if kind == "message_start":
                    model = event.message.model or model
                    input_usage = event.message.usage
                    output_tokens = getattr(event.message.usage, "output_tokens", 0) or 0
                elif kind == "content_block_start":
                    block = event.content_block
                    if block.type == "tool_use":
                        blocks[event.index] = {
                            "id": block.id,
                            "name": block.name,
                            "json": [],
                            "input": block.input,
                        }
                elif kind == "content_block_delta":
                    delta = event.delta
                    if delta.type == "text_delta" and delta.text:
                        text.append(delta.text)
                        yield ChatDelta(content=delta.text)
                    elif delta.type == "input_json_delta" and event.index in blocks:
                        blocks[event.index]["json"].append(delta.partial_json)
                elif kind == "message_delta":
                    stop_reason = event.delta.stop_reason or stop_reason
                    usage = event.usage
                    if usage is not None:
                        output_tokens = usage.output_tokens or output_tokens
                        if getattr(usage, "input_tokens", None):  # newer API versions repeat it here
                            input_usage = usage
        except Exception as exc:
            error = self._error(exc, config)
            if error is exc:
                raise
            raise error from None
        finally:
            if stream is not None:
                stream.close()
            client.close()
        tool_calls = []
        for _index, block in sorted(blocks.items()):
            arguments = "".join(block["json"]) or json.dumps(block["input"] or {})
            tool_calls.append(ToolCallRequest(id=block["id"], name=block["name"], arguments=arguments))
        usage = _usage(input_usage)
        yield ChatDelta(
            response=ChatResponse(
                content="".join(text) if text else None,
                tool_calls=tool_calls,
                finish_reason=FINISH_REASONS.get(stop_reason or "", stop_reason or "stop"),
                usage=Usage(usage.input_tokens, output_tokens),
                model=model,
                provider=config.provider,
            )
        )
