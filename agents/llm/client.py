"""Calling a model: `chat()` and `chat_stream()`, the only entry points the rest of the product uses.

Around one provider call (agents.llm.adapters) they add:

* Key: the model's API key is revealed per call (`secret_reveal`, purpose "model <id>"), handed to the
  adapter and nowhere else; it is scrubbed from error messages, so no span, event or log carries it.
* Retries (tenacity): on 408/409/429/5xx, timeouts and connection errors, with exponential backoff and
  jitter (LLM_RETRY_BACKOFF_SECONDS doubling), or exactly the wait a `retry-after-ms` / `retry-after`
  header asks for; each wait capped at LLM_MAX_RETRY_WAIT_SECONDS; at most LLM_MAX_RETRIES retries. Never
  on 400/401/403/404 or a refused (SSRF) URL.
* One deadline: `request.timeout` bounds the whole call, retries and fallbacks included. Each attempt
  gets the time left, capped by the model's `default_parameters.timeout_seconds` (set it on a primary to
  leave time for its fallback). A stream is checked against the deadline between deltas.
* Circuit breaker per model config, state in Django's cache (shared by every process): after
  LLM_BREAKER_FAILURES consecutive failed calls (timeouts, 429s, 5xx, connection errors; a call counts
  once, after its retries) it opens for LLM_BREAKER_COOLDOWN_SECONDS and calls fail fast with kind
  "circuit_open"; after the cooldown one trial call goes through (half-open): success closes it, failure
  reopens it. An answer such as 400 or 401 proves the endpoint is up and resets the count.
* Fallback: when a model fails for good, its `fallback` answers, then that one's (at most MAX_FALLBACKS,
  inactive ones skipped, no cycles). Every kind falls back except
    - "bad_request": the request itself was rejected (invalid messages, schema, too long ...); another
      model would most likely reject it too, and a second paid call would only hide the problem;
    - "config": our own setup is wrong (unknown provider, unreadable key, missing base_url); that must
      surface, not be masked by a fallback.
  Auth errors, rate limits, timeouts, 5xx, an open breaker and a refused URL do fall back. A stream falls
  back only before its first delta: text already shown cannot be taken back. The response says
  `fallback_used=True` and names the config that answered; a call that fails everywhere raises the last
  model's error kind with every model's message.
* Usage and cost on every call: cost_usd = input_tokens x input_price_per_million / 1e6 +
  output_tokens x output_price_per_million / 1e6 of the config that answered.
* One span per call (retries and fallbacks included): `chat <model_name>`, kind "llm", with the
  OpenTelemetry GenAI attributes, `agentmesh.cost_usd`, `agentmesh.model_config.id`,
  `agentmesh.fallback_used`; status error on failure. A stream's span ends with the stream, also when the
  consumer stops early (status ok, `agentmesh.stream.completed=False`).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import tenacity
from django.conf import settings
from django.core.cache import cache

from masterdata.services import MAX_FALLBACK_CHAIN
from observability.services import SpanHandle, event_record, span_end, span_start, use_span

from .adapters import Adapter, ProviderError, adapter_for
from .base import ChatDelta, ChatRequest, ChatResponse, LLMError, Usage

logger = logging.getLogger(__name__)

MAX_FALLBACKS = MAX_FALLBACK_CHAIN
NO_FALLBACK_KINDS = frozenset({"bad_request", "config"})
# Outcomes that count against a model's health, and answers that prove its endpoint is up.
UNHEALTHY_KINDS = frozenset({"timeout", "rate_limited", "upstream"})
ANSWERED_KINDS = frozenset({"bad_request", "auth"})
MIN_ATTEMPT_SECONDS = 0.05  # no attempt starts with less time than this left
BREAKER_STATE_TTL = 24 * 3600
OTEL_PROVIDER_NAMES = {"openai": "openai", "azure_openai": "azure.ai.openai", "anthropic": "anthropic"}


# --- public API -----------------------------------------------------------------------------------


def chat(model_config: Any, request: ChatRequest, *, actor: Any = None) -> ChatResponse:
    """One chat completion from `model_config` (or its fallbacks). Raises LLMError."""
    _check_active(model_config)
    call = _Call(model_config, request, actor)
    call.open_span()
    try:
        with use_span(call.handle):
            response = call.run()
    except BaseException as exc:
        call.close_span(error=exc)
        raise
    call.close_span(response=response)
    return response


def chat_stream(model_config: Any, request: ChatRequest, *, actor: Any = None) -> Iterator[ChatDelta]:
    """Stream a chat completion: text deltas, then one delta whose `response` is the complete
    ChatResponse (tool calls assembled, usage, cost). Raises LLMError (an inactive model at once, the
    rest while iterating). Close the iterator when stopping early; its span then ends."""
    _check_active(model_config)
    return _stream(_Call(model_config, request, actor))


def cost_of(model_config: Any, usage: Usage) -> Decimal:
    """What `usage` costs at `model_config`'s prices (USD per million tokens)."""
    input_price = Decimal(str(model_config.input_price_per_million or 0))
    output_price = Decimal(str(model_config.output_price_per_million or 0))
    return (usage.input_tokens * input_price + usage.output_tokens * output_price) / Decimal(1_000_000)


# --- internals ------------------------------------------------------------------------------------


def _check_active(model_config: Any) -> None:
    if not model_config.is_active:
        raise LLMError(f"Model {model_config.name} is not active.", kind="config")


def _stream(call: _Call) -> Iterator[ChatDelta]:
    call.open_span()
    closed = False
    deltas = call.run_stream()
    try:
        for delta in deltas:
            if delta.response is not None:
                call.close_span(response=delta.response)
                closed = True
            yield delta
    except BaseException as exc:  # GeneratorExit too: the consumer stopped early
        if not closed:
            closed = True
            call.close_span(error=exc)
        raise
    finally:
        deltas.close()  # closes the provider stream and its connection now, not at garbage collection
        if not closed:
            call.close_span(error=LLMError("The stream ended without a response.", kind="upstream"))


def _scrubbed(exc: LLMError, secret: str | None) -> LLMError:
    """`exc` without the API key in its message (a provider may quote what it received)."""
    if secret and len(secret) >= 4 and secret in str(exc):
        exc.args = (str(exc).replace(secret, "***"),)
    return exc


def _effective_request(config: Any, request: ChatRequest) -> ChatRequest:
    """The request with the model's default temperature/top_p/max_tokens where it sets none."""
    defaults = config.default_parameters or {}
    changes = {
        name: defaults[name]
        for name in ("temperature", "top_p", "max_tokens")
        if getattr(request, name) is None and defaults.get(name) is not None
    }
    return replace(request, **changes) if changes else request


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


def _wait(retry_state: tenacity.RetryCallState) -> float:
    cap = max(float(settings.LLM_MAX_RETRY_WAIT_SECONDS), 0.0)
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        return min(retry_after, cap)
    backoff = float(settings.LLM_RETRY_BACKOFF_SECONDS) * 2 ** (retry_state.attempt_number - 1)
    return min(backoff, cap) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not cryptography


class _Breaker:
    """The circuit breaker of one model config, kept in the cache (see the module docstring)."""

    def __init__(self, config: Any, hold_seconds: float) -> None:
        self.config = config
        self.prefix = f"agentmesh:llm:breaker:{config.pk}"
        self.enabled = config.pk is not None and settings.LLM_BREAKER_FAILURES > 0
        self.hold_seconds = hold_seconds
        self.trial = False

    def _key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def enter(self) -> None:
        """Raise LLMError(kind="circuit_open") while the breaker is open, or half-open with a trial call
        already in flight; otherwise let the call through (as the trial call when half-open)."""
        if not self.enabled:
            return
        try:
            open_until = cache.get(self._key("open_until"))
            if open_until is None:
                return
            left = open_until - time.time()
            if left > 0:
                raise LLMError(
                    f"Model {self.config.name} failed repeatedly; its circuit breaker is open for "
                    f"another {left:.1f}s.",
                    kind="circuit_open",
                )
            trial_ttl = max(1, math.ceil(self.hold_seconds) + 5)
            if not cache.add(self._key("trial"), 1, timeout=trial_ttl):
                raise LLMError(
                    f"Model {self.config.name} is being retried after repeated failures (circuit breaker "
                    "half-open); other calls wait for that trial.",
                    kind="circuit_open",
                )
            self.trial = True
        except LLMError:
            raise
        except Exception:
            logger.warning("circuit breaker state of model %s unavailable", self.config.pk, exc_info=True)

    def record(self, kind: str | None) -> bool:
        """Record a call's outcome (None: success). Returns True when this outcome opened the breaker."""
        if not self.enabled:
            return False
        trial, self.trial = self.trial, False
        keys = [self._key("failures"), self._key("open_until"), self._key("trial")]
        try:
            if kind is None or kind in ANSWERED_KINDS:
                if trial or cache.get(keys[0]):
                    cache.delete_many(keys)
            elif kind in UNHEALTHY_KINDS:
                cache.add(keys[0], 0, timeout=BREAKER_STATE_TTL)
                failures = cache.incr(keys[0])
                if trial or failures >= settings.LLM_BREAKER_FAILURES:
                    cooldown = float(settings.LLM_BREAKER_COOLDOWN_SECONDS)
                    cache.set(
                        keys[1], time.time() + cooldown, timeout=math.ceil(cooldown) + BREAKER_STATE_TTL
                    )
                    cache.set(keys[0], 0, timeout=BREAKER_STATE_TTL)
                    cache.delete(keys[2])
                    return True
            elif trial:
                cache.delete(keys[2])  # nothing was learnt (e.g. refused URL): let another trial go
        except Exception:
            logger.warning("circuit breaker state of model %s unavailable", self.config.pk, exc_info=True)
        return False

    def release(self) -> None:
        """Give up a trial slot without an outcome (the call was interrupted)."""
        if self.trial:
            self.trial = False
            try:
                cache.delete(self._key("trial"))
            except Exception:
                logger.warning("circuit breaker state of model %s unavailable", self.config.pk, exc_info=True)


def breakers_reset(configs: Any) -> list[dict]:
    """Close the circuit breakers of `configs` (model configs: pk and name): forget their failure
    counts, open state and trial slot, so the next call goes through. Returns the ones that had
    state, each with whether it was open. Used by POST /system/restart/breakers."""
    reset = []
    for config in configs:
        breaker = _Breaker(config, 0)
        keys = [breaker._key("failures"), breaker._key("open_until"), breaker._key("trial")]
        state = cache.get_many(keys)
        if state:
            cache.delete_many(keys)
            open_until = state.get(keys[1])
            reset.append(
                {
                    "model_config": str(config.pk),
                    "name": config.name,
                    "was_open": bool(open_until and open_until > time.time()),
                    "failures": int(state.get(keys[0]) or 0),
                }
            )
    return reset


class _Call:
    """One call to a model with its fallbacks: deadline, attempts, errors, span."""

    def __init__(self, primary: Any, request: ChatRequest, actor: Any) -> None:
        self.primary = primary
        self.request = request
        self.actor = actor
        self.deadline = time.monotonic() + max(float(request.timeout), 0.0)
        self.attempts = 0
        self.errors: list[tuple[Any, LLMError]] = []
        self.fallback_tried = False
        self.handle: SpanHandle | None = None

    # --- models and keys ------------------------------------------------------------------------
    def configs(self) -> Iterator[Any]:
        """The primary, then its active fallbacks, read from the database only when needed."""
        yield self.primary
        node, seen = self.primary, {self.primary.pk}
        for _ in range(MAX_FALLBACKS):
            node = node.fallback
            if node is None or node.pk in seen:
                return
            seen.add(node.pk)
            if node.is_active:
                yield node

    def _api_key(self, config: Any, adapter: Adapter) -> str | None:
        if not adapter.needs_api_key or config.api_key_secret_id is None:
            return None
        from masterdata.services import secret_reveal

        try:
            return secret_reveal(secret=config.api_key_secret, actor=None, purpose=f"model {config.pk}")
        except Exception as exc:
            raise LLMError(
                f"The API key of model {config.name} cannot be read ({type(exc).__name__}).", kind="config"
            ) from None

    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def _attempt_timeout(self, config: Any) -> float:
        left = self._left()
        if left < MIN_ATTEMPT_SECONDS:
            raise ProviderError(
                f"The call to {config.name} ran out of time (timeout {self.request.timeout:g}s).",
                kind="timeout",
                retryable=False,
            )
        cap = (config.default_parameters or {}).get("timeout_seconds")
        return min(left, float(cap)) if cap else left

    def _retrying(self) -> tenacity.Retrying:
        def stop(retry_state: tenacity.RetryCallState) -> bool:
            if retry_state.attempt_number > settings.LLM_MAX_RETRIES:
                return True
            return self._left() - (retry_state.upcoming_sleep or 0) < MIN_ATTEMPT_SECONDS

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(_retryable),
            wait=_wait,
            stop=stop,
            sleep=time.sleep,
            reraise=True,
        )

    def _with_breaker(self, config: Any, attempt: Callable[[Adapter, str | None], Any]) -> Any:
        """Run `attempt(adapter, api_key)` with retries, behind `config`'s circuit breaker."""
        adapter = adapter_for(config.provider)
        breaker = _Breaker(config, self._left())
        breaker.enter()
        try:
            api_key = self._api_key(config, adapter)

            def one_attempt() -> Any:
                self.attempts += 1
                try:
                    return attempt(adapter, api_key)
                except LLMError as exc:
                    raise _scrubbed(exc, api_key) from None

            result = self._retrying()(one_attempt)
        except LLMError as exc:
            if breaker.record(exc.kind):
                self._event(
                    "llm.circuit_opened",
                    config,
                    f"Circuit breaker of model {config.name} opened for "
                    f"{settings.LLM_BREAKER_COOLDOWN_SECONDS}s after repeated failures ({exc.kind}).",
                    {"model_config_id": str(config.pk), "kind": exc.kind, "status": exc.status},
                )
            raise
        except BaseException:
            breaker.release()
            raise
        breaker.record(None)
        return result

    # --- the chain ------------------------------------------------------------------------------
    def _failed(self, config: Any, exc: LLMError) -> None:
        """Remember a model's failure; raise the final error unless a fallback may be tried."""
        self.errors.append((config, exc))
        if exc.kind in NO_FALLBACK_KINDS or self._left() < MIN_ATTEMPT_SECONDS:
            raise self._final_error()

    def _final_error(self) -> LLMError:
        _config, last = self.errors[-1]
        if len(self.errors) == 1:
            return last
        messages = "; ".join(f"{c.name}: {e}" for c, e in self.errors)
        return LLMError(f"Every model failed. {messages}"[:5000], kind=last.kind, status=last.status)

    def _starting_fallback(self, config: Any) -> None:
        self.fallback_tried = True
        failed, exc = self.errors[-1]
        self._event(
            "llm.fallback",
            failed,
            f"Model {failed.name} failed ({exc.kind}); trying its fallback {config.name}.",
            {
                "model_config_id": str(failed.pk),
                "fallback_model_config_id": str(config.pk),
                "kind": exc.kind,
                "status": exc.status,
            },
        )

    def _finish(self, response: ChatResponse, config: Any, index: int) -> ChatResponse:
        response.model = response.model or config.model_name
        response.model_config_id = config.pk
        response.provider = config.provider
        response.cost_usd = cost_of(config, response.usage)
        response.attempts = self.attempts
        response.fallback_used = index > 0
        return response

    def run(self) -> ChatResponse:
        for index, config in enumerate(self.configs()):
            if index:
                self._starting_fallback(config)
            request = _effective_request(config, self.request)

            def attempt(
                adapter: Adapter, api_key: str | None, config=config, request=request
            ) -> ChatResponse:
                timeout = self._attempt_timeout(config)
                return adapter.chat(config, replace(request, timeout=timeout), api_key)

            try:
                response = self._with_breaker(config, attempt)
            except LLMError as exc:
                self._failed(config, exc)
                continue
            return self._finish(response, config, index)
        raise self._final_error()

    def run_stream(self) -> Iterator[ChatDelta]:
        for index, config in enumerate(self.configs()):
            if index:
                self._starting_fallback(config)
            request = _effective_request(config, self.request)

            def open_stream(
                adapter: Adapter, api_key: str | None, config=config, request=request
            ) -> tuple[ChatDelta, Iterator[ChatDelta], str | None]:
                timeout = self._attempt_timeout(config)
                iterator = iter(adapter.stream(config, replace(request, timeout=timeout), api_key))
                try:
                    first = next(iterator)
                except StopIteration:
                    raise ProviderError("The stream ended without a response.", retryable=False) from None
                return first, iterator, api_key

            try:
                first, iterator, api_key = self._with_breaker(config, open_stream)
            except LLMError as exc:
                self._failed(config, exc)
                continue
            # Output has begun: from here on a failure is final (no retry, no fallback).
            yield from self._rest_of_stream(config, index, first, iterator, api_key)
            return
        raise self._final_error()

    def _rest_of_stream(
        self, config: Any, index: int, first: ChatDelta, iterator: Iterator[ChatDelta], api_key: str | None
    ) -> Iterator[ChatDelta]:
        try:
            delta = first
            while True:
                if delta.response is not None:
                    self._finish(delta.response, config, index)
                    yield delta
                    return
                yield delta
                if self._left() <= 0:
                    raise ProviderError(
                        f"The stream of {config.name} exceeded the timeout ({self.request.timeout:g}s).",
                        kind="timeout",
                    )
                try:
                    delta = next(iterator)
                except StopIteration:
                    raise ProviderError("The stream ended without a response.") from None
        except LLMError as exc:
            _scrubbed(exc, api_key)
            if exc.kind in UNHEALTHY_KINDS:
                _Breaker(config, 0).record(exc.kind)
            self.errors.append((config, exc))
            raise
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    # --- observability --------------------------------------------------------------------------
    def _event(self, type_: str, config: Any, message: str, payload: dict) -> None:
        if self.handle is None:
            return
        with use_span(self.handle):
            event_record(
                type=type_,
                level="warning",
                source="agents",
                actor=self.actor,
                resource=config,
                message=message,
                payload=payload,
            )

    def open_span(self) -> None:
        primary, request = self.primary, self.request
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": OTEL_PROVIDER_NAMES.get(primary.provider, primary.provider),
            "gen_ai.request.model": primary.model_name,
            "agentmesh.model_config.id": str(primary.pk),
        }
        if request.max_tokens:
            attributes["gen_ai.request.max_tokens"] = request.max_tokens
        if request.temperature is not None:
            attributes["gen_ai.request.temperature"] = request.temperature
        if request.top_p is not None:
            attributes["gen_ai.request.top_p"] = request.top_p
        self.handle = span_start(
            f"chat {primary.model_name}", kind="llm", attributes=attributes, actor=self.actor, persist=False
        )

    def close_span(self, *, response: ChatResponse | None = None, error: BaseException | None = None) -> None:
        handle = self.handle
        if handle is None:
            return
        self.handle = None
        attributes: dict[str, Any] = {
            "agentmesh.attempts": self.attempts,
            "agentmesh.fallback_used": self.fallback_tried if response is None else response.fallback_used,
        }
        if response is not None:
            attributes.update(
                {
                    "gen_ai.provider.name": OTEL_PROVIDER_NAMES.get(response.provider, response.provider),
                    "gen_ai.response.model": response.model,
                    "gen_ai.usage.input_tokens": response.usage.input_tokens,
                    "gen_ai.usage.output_tokens": response.usage.output_tokens,
                    "gen_ai.response.finish_reasons": [response.finish_reason],
                    "agentmesh.cost_usd": str(response.cost_usd),
                    "agentmesh.model_config.id": str(response.model_config_id),
                }
            )
            span_end(handle, status="ok", attributes=attributes)
        elif isinstance(error, GeneratorExit):
            attributes["agentmesh.stream.completed"] = False
            span_end(handle, status="ok", attributes=attributes)
        else:
            attributes["error.type"] = error.kind if isinstance(error, LLMError) else type(error).__name__
            message = str(error) if isinstance(error, LLMError) else f"{type(error).__name__}: {error}"
            span_end(
                handle, status="error", error=message[:2000] or type(error).__name__, attributes=attributes
            )
