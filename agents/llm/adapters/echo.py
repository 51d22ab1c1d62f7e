"""The built-in `echo` provider: a deterministic DEMO provider, not a language model.

It makes no network call and needs no key, so the offline demo, the examples and tests can run an agent
end to end. It never pretends to be a real model: its replies say what it does. Rules, first match wins:

1. the last message is a tool result     -> "Tool result: <content>" (consecutive results joined by lines)
2. the last user message is `call <tool_name> <json-args>` (or `call <tool_name>`: arguments {}) and that
   tool is in request.tools              -> one tool call with a deterministic id, finish_reason tool_calls
3. the last user message starts with `summarize:` -> its first sentence (at most 20 words)
4. otherwise                             -> "Echo: <last user message>"

With a json_schema response_format a text reply is the JSON text {"echo": "<text>"}. Usage counts words:
input = the words of all messages, output = the words of the reply. Streaming yields the reply word by word,
then the final response.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

from agents.llm.base import ChatDelta, ChatRequest, ChatResponse, ToolCallRequest, Usage

_CALL = re.compile(r"\s*call\s+([A-Za-z0-9_.\-]+)(?:\s+(.*))?", re.DOTALL | re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
_WORD_PIECES = re.compile(r"\s*\S+(?:\s+$)?")  # joined, they give back the text
SUMMARY_MAX_WORDS = 20


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


def _words(text: str) -> int:
    return len(text.split())


def _tool_names(request: ChatRequest) -> set[str]:
    return {(t.get("function") or t).get("name") for t in request.tools}


def _summary(text: str) -> str:
    text = text.strip()
    end = _SENTENCE_END.search(text)
    sentence = text[: end.end()] if end else text
    words = sentence.split()
    return " ".join(words[:SUMMARY_MAX_WORDS])


def reply(request: ChatRequest) -> tuple[str | None, list[ToolCallRequest]]:
    """The echo provider's answer to `request`: (text, tool calls)."""
    messages = request.messages
    if messages and messages[-1].get("role") == "tool":
        results = []
        for message in reversed(messages):
            if message.get("role") != "tool":
                break
            results.append(_text(message.get("content")))
        return "Tool result: " + "\n".join(reversed(results)), []
    last_user = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    match = _CALL.fullmatch(last_user)
    if match and match.group(1) in _tool_names(request):
        name, arguments = match.group(1), (match.group(2) or "").strip() or "{}"
        digest = hashlib.sha256(f"{len(messages)}:{name}:{arguments}".encode()).hexdigest()[:16]
        return None, [ToolCallRequest(id=f"call_echo_{digest}", name=name, arguments=arguments)]
    stripped = last_user.lstrip()
    if stripped[:10].lower() == "summarize:":
        return _summary(stripped[10:]), []
    return f"Echo: {last_user}", []


class EchoAdapter:
    """The deterministic DEMO provider (see the module docstring). No network, no key, no retries."""

    needs_api_key = False

    def describe(self) -> str:
        return (
            "Echo: a built-in deterministic DEMO provider, not a language model. It works offline and "
            "answers by rules: a tool result is repeated ('Tool result: ...'); 'call <tool> <json>' calls "
            "that tool; 'summarize: <text>' returns the first sentence (at most 20 words); anything else "
            "is echoed ('Echo: ...'). Usage counts words."
        )

    def chat(self, config: Any, request: ChatRequest, api_key: str | None = None) -> ChatResponse:
        text, tool_calls = reply(request)
        if text is not None and (request.response_format or {}).get("type") == "json_schema":
            text = json.dumps({"echo": text})
        output = _words(text or "") + sum(_words(f"{c.name} {c.arguments}") for c in tool_calls)
        input_words = 0
        for message in request.messages:
            input_words += _words(_text(message.get("content")))
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                input_words += _words(f"{function.get('name', '')} {function.get('arguments', '')}")
        return ChatResponse(
            content=text,
            tool_calls=tool_calls,
            finish_reason="tool_calls" if tool_calls else "stop",
            usage=Usage(input_words, output),
            model=config.model_name or "echo",
            provider="echo",
        )

    def stream(self, config: Any, request: ChatRequest, api_key: str | None = None) -> Iterator[ChatDelta]:
        response = self.chat(config, request, api_key)
        for piece in _WORD_PIECES.findall(response.content or ""):
            yield ChatDelta(content=piece)
        yield ChatDelta(response=response)
