"""Provider adapters: one class per provider family, each turning a ChatRequest into one provider call.

    adapter = adapter_for(config.provider)
    adapter.chat(config, request, api_key) -> ChatResponse
    adapter.stream(config, request, api_key) -> Iterator[ChatDelta]   # text deltas, then one with .response

An adapter makes exactly one attempt (the SDKs run with max_retries=0): retries, the circuit breaker,
fallbacks, cost and spans live in agents.llm.client. `request.timeout` is the attempt's timeout. Errors are
raised as ProviderError (an LLMError with `kind`, `status`, `retry_after` and `retryable`).

Every SDK client talks through `safe_httpx2_client` (the SSRF guard), never follows redirects (a redirect
would carry the API key to another host) and gets every credential explicitly, so nothing is read from the
server's environment (OPENAI_API_KEY, ANTHROPIC_API_KEY, profiles, ...).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from agents.llm.base import ChatDelta, ChatRequest, ChatResponse, LLMError

RETRYABLE_KINDS = frozenset({"timeout", "rate_limited", "upstream"})
# Chat Completions parameters a model config's default_parameters may add (besides temperature, top_p and
# max_tokens, which the client merges into the request).
EXTRA_PARAMETERS = ("presence_penalty", "frequency_penalty", "stop", "seed")


class ProviderError(LLMError):
    """One failed attempt. `retryable`: whether another attempt may succeed (408/409/429/5xx, timeouts,
    connection errors); `retry_after`: seconds the provider asked us to wait (retry-after[-ms])."""

    def __init__(
        self,
        message: str,
        *,
        kind: str = "upstream",
        status: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message, kind=kind, status=status)
        self.retry_after = retry_after
        self.retryable = (kind in RETRYABLE_KINDS) if retryable is None else retryable


class Adapter(Protocol):
    needs_api_key: bool

    def describe(self) -> str: ...

    def chat(self, config: Any, request: ChatRequest, api_key: str | None) -> ChatResponse: ...

    def stream(self, config: Any, request: ChatRequest, api_key: str | None) -> Iterator[ChatDelta]: ...


def kind_for_status(status: int) -> str:
    if status in (401, 402, 403):
        return "auth"
    if status == 408:
        return "timeout"
    if status == 429:
        return "rate_limited"
    if status == 409 or status >= 500 or status < 400:
        return "upstream"  # 3xx: redirects are not followed (they would carry the key elsewhere)
    return "bad_request"


def is_retryable_status(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The wait a response asks for: `retry-after-ms` (milliseconds), else `retry-after` (seconds or an
    HTTP date). None when absent or unreadable."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(float(value) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


# Error types in the JSON body of a provider error (Anthropic's mid-stream `error` event has no status).
_STATUS_OF_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def _error_type(body: Any) -> str:
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping):
            return str(error.get("type") or "")
    return ""


def translate_sdk_error(exc: BaseException, sdk: Any, label: str) -> ProviderError | None:
    """The ProviderError for an exception out of the openai or anthropic SDK (`sdk` is the module; both
    share the exception hierarchy) or out of the safe transport; None for anything else (a bug: let it
    propagate)."""
    from agentmesh.core.safe_http import ResponseTooLarge, UnsafeURLError

    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, UnsafeURLError):
        return ProviderError(str(exc), kind="refused", retryable=False)
    if isinstance(exc, ResponseTooLarge):
        return ProviderError(str(exc), kind="upstream", retryable=False)
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderError(f"{label} did not answer in time.", kind="timeout")
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f": {type(cause).__name__}: {cause}" if cause else ""
        return ProviderError(f"Could not connect to {label}{detail}"[:1000], kind="upstream")
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        if status < 300:  # an error event inside a 200 stream: the body names the error
            status = _STATUS_OF_ERROR_TYPE.get(_error_type(exc.body), 500)
        headers = exc.response.headers if exc.response is not None else None
        return ProviderError(
            f"{label} answered {status}: {exc.message}"[:2000],
            kind=kind_for_status(status),
            status=status,
            retry_after=retry_after_seconds(headers),
            retryable=is_retryable_status(status),
        )
    if isinstance(exc, sdk.APIResponseValidationError):
        return ProviderError(f"{label} sent a response that does not parse: {exc}"[:2000], retryable=False)
    if isinstance(exc, sdk.APIError):  # e.g. an error object inside an OpenAI stream
        status = _STATUS_OF_ERROR_TYPE.get(_error_type(exc.body))
        return ProviderError(
            f"{label} reported an error: {exc}"[:2000],
            kind=kind_for_status(status) if status else "upstream",
            status=status,
        )
    try:
        import httpx2
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, httpx2.TimeoutException):
        return ProviderError(f"{label} did not answer in time.", kind="timeout")
    if isinstance(exc, httpx2.TransportError):
        return ProviderError(f"The connection to {label} failed: {exc}"[:1000], kind="upstream")
    return None


def extra_parameters(config: Any) -> dict[str, Any]:
    defaults = config.default_parameters or {}
    return {name: defaults[name] for name in EXTRA_PARAMETERS if defaults.get(name) is not None}


def adapter_for(provider: str) -> Adapter:
    """The adapter of a provider id (masterdata.models.Provider); LLMError(kind="config") if unknown."""
    from .anthropic import AnthropicAdapter
    from .echo import EchoAdapter
    from .openai_compat import OpenAICompatAdapter

    adapters: dict[str, Adapter] = {
        "openai": OpenAICompatAdapter(),
        "openai_compatible": OpenAICompatAdapter(),
        "azure_openai": OpenAICompatAdapter(),
        "ollama": OpenAICompatAdapter(),
        "anthropic": AnthropicAdapter(),
        "echo": EchoAdapter(),
    }
    try:
        return adapters[provider]
    except KeyError:
        raise LLMError(f"Unknown LLM provider {provider!r}.", kind="config") from None
