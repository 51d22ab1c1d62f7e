"""OpenAI and every server speaking the Chat Completions API, through the official `openai` SDK.

Providers: `openai` (api.openai.com unless base_url says otherwise), `openai_compatible` (vLLM, llama.cpp,
LM Studio, LiteLLM, ...), `ollama` (its /v1 endpoint) and `azure_openai` (AzureOpenAI with api_version;
model_name is the deployment). Our internal format is the Chat Completions shape, so messages and tools
pass through as they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx2
import openai
from django.conf import settings

from agentmesh.core.safe_http import safe_httpx2_client
from agents.llm.base import ChatDelta, ChatRequest, ChatResponse, ToolCallRequest, Usage

from . import ProviderError, extra_parameters, translate_sdk_error

# Servers without authentication (a local Ollama or vLLM) ignore the key, but the SDK requires one; an
# explicit value also stops it from reading OPENAI_API_KEY from the server's environment.
NO_KEY = "no-key"
_MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")


def _timeout(seconds: float) -> httpx2.Timeout:
    seconds = max(seconds, 0.01)
    return httpx2.Timeout(seconds, connect=min(settings.SAFE_HTTP_CONNECT_TIMEOUT, seconds))


class OpenAICompatAdapter:
    needs_api_key = True

    def describe(self) -> str:
        return "OpenAI Chat Completions API (OpenAI, Azure OpenAI, Ollama and OpenAI-compatible servers)."

    # --- client -----------------------------------------------------------------------------
    def _client(self, config: Any, api_key: str | None, timeout: float) -> openai.OpenAI:
        from masterdata.providers import PROVIDERS

        http_client = safe_httpx2_client(
            timeout=_timeout(timeout),
            follow_redirects=False,
            max_response_bytes=settings.SAFE_HTTP_MAX_RESPONSE_BYTES,
        )
        common: dict[str, Any] = {
            "api_key": api_key or NO_KEY,
            "max_retries": 0,
            "timeout": _timeout(timeout),
            "http_client": http_client,
        }
        try:
            if config.provider == "azure_openai":
                base = config.base_url.rstrip("/")
                # A resource endpoint (https://x.openai.azure.com) or a full .../openai/... base URL.
                where = {"base_url": base} if "/openai" in urlsplit(base).path else {"azure_endpoint": base}
                client: openai.OpenAI = openai.AzureOpenAI(api_version=config.api_version, **where, **common)
            else:
                spec = PROVIDERS.get(config.provider)
                base_url = config.base_url or (spec.default_base_url if spec else "")
                if not base_url:
                    raise ProviderError(f"Model {config.name} has no base_url.", kind="config")
                client = openai.OpenAI(base_url=base_url, **common)
        except ProviderError:
            http_client.close()
            raise
        except (openai.OpenAIError, ValueError) as exc:
            http_client.close()
            raise ProviderError(f"Cannot configure model {config.name}: {exc}", kind="config") from exc
        # Organization/project/admin key default to the server's OPENAI_* environment: never send those.
        client.organization = None
        client.project = None
        client.admin_api_key = None
        return client

    # --- request ----------------------------------------------------------------------------
    def _params(self, config: Any, request: ChatRequest) -> dict[str, Any]:
        messages = []
        for message in request.messages:
            clean = {k: message[k] for k in _MESSAGE_KEYS if k in message}
            if not clean.get("tool_calls"):
                clean.pop("tool_calls", None)
            messages.append(clean)
        params: dict[str, Any] = {"model": config.model_name, "messages": messages}
        if request.tools:
            params["tools"] = request.tools
            if not request.parallel_tool_calls:
                params["parallel_tool_calls"] = False
        if request.response_format:
            params["response_format"] = request.response_format
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.top_p is not None:
            params["top_p"] = request.top_p
        if request.max_tokens:
            # OpenAI deprecated max_tokens (its reasoning models reject it); other servers know max_tokens.
            key = "max_completion_tokens" if config.provider == "openai" else "max_tokens"
            params[key] = request.max_tokens
        params.update(extra_parameters(config))
        return params

    def _label(self, config: Any) -> str:
        return f"The model endpoint of {config.name}"

    # --- calls ------------------------------------------------------------------------------
    def chat(self, config: Any, request: ChatRequest, api_key: str | None) -> ChatResponse:
        client = self._client(config, api_key, request.timeout)
        try:
            completion = client.chat.completions.create(
                **self._params(config, request), timeout=_timeout(request.timeout)
            )
        except Exception as exc:
            error = translate_sdk_error(exc, openai, self._label(config))
            if error is None:
                raise
            raise error from None
        finally:
            client.close()
        if not completion.choices:
            raise ProviderError(f"{self._label(config)} answered without a choice.", retryable=False)
        choice = completion.choices[0]
        message = choice.message
        tool_calls = [
            ToolCallRequest(id=call.id, name=call.function.name, arguments=call.function.arguments or "")
            for call in (message.tool_calls or [])
            if getattr(call, "type", "function") == "function"
        ]
        content, finish_reason = message.content, choice.finish_reason
        if not content and getattr(message, "refusal", None):
            content, finish_reason = message.refusal, "content_filter"
        usage = completion.usage
        return ChatResponse(
            content=content,
            tool_calls=tool_calls,
            finish_reason=finish_reason or ("tool_calls" if tool_calls else "stop"),
            usage=Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0) if usage else Usage(),
            model=completion.model or config.model_name,
            provider=config.provider,
        )

    def stream(self, config: Any, request: ChatRequest, api_key: str | None) -> Iterator[ChatDelta]:
        label = self._label(config)
        client = self._client(config, api_key, request.timeout)
        stream = None
        try:
            stream = client.chat.completions.create(
                **self._params(config, request),
                stream=True,
                stream_options={"include_usage": True},
                timeout=_timeout(request.timeout),
            )
            text: list[str] = []
            calls: dict[int, dict[str, Any]] = {}
            usage = Usage()
            model, finish_reason = config.model_name, None
            for chunk in stream:
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
                for choice in chunk.choices:
                    if choice.index:
                        continue  # n=1: only the first choice
                    delta = choice.delta
                    if delta is not None:
                        for call in delta.tool_calls or []:
                            index = call.index if call.index is not None else len(calls)
                            slot = calls.setdefault(index, {"id": "", "name": "", "arguments": []})
                            if call.id:
                                slot["id"] = call.id
                            if call.function is not None:
                                if call.function.name and not slot["name"]:
                                    slot["name"] = call.function.name
                                if call.function.arguments:
                                    slot["arguments"].append(call.function.arguments)
                        if delta.content:
                            text.append(delta.content)
                            yield ChatDelta(content=delta.content)
                        elif not text and getattr(delta, "refusal", None):
                            finish_reason = "content_filter"
                            text.append(delta.refusal)
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason if finish_reason is None else finish_reason
        except Exception as exc:
            error = translate_sdk_error(exc, openai, label)
            if error is None:
                raise
            raise error from None
        finally:
            if stream is not None:
                stream.close()
            client.close()
        tool_calls = [
            ToolCallRequest(
                id=slot["id"] or f"call_{index}", name=slot["name"], arguments="".join(slot["arguments"])
            )
            for index, slot in sorted(calls.items())
        ]
        yield ChatDelta(
            response=ChatResponse(
                content="".join(text) if text else None,
                tool_calls=tool_calls,
                finish_reason=finish_reason or ("tool_calls" if tool_calls else "stop"),
                usage=usage,
                model=model,
                provider=config.provider,
            )
        )
