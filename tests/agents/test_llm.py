"""The LLM client and adapters against fake OpenAI/Anthropic servers on 127.0.0.1 (the real SDKs, the real
SSRF-guarded transport, no mocks of the network)."""

import itertools
import json
import logging
import time
from decimal import Decimal

import httpcore2
import pytest

from agents.llm.adapters import adapter_for, retry_after_seconds
from agents.llm.adapters.anthropic import to_anthropic
from agents.llm.base import ChatRequest, LLMError
from agents.llm.client import chat, chat_stream
from masterdata.services import model_config_create, model_config_update, secret_create
from observability.models import LogRecord, ObservabilityEvent, Span
from tests.fake_llm import FakeAnthropic, FakeOpenAI, Reply

pytestmark = pytest.mark.django_db

_names = itertools.count(1)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "description": "Time in a zone", "parameters": {"type": "object"}},
}


@pytest.fixture(autouse=True)
def _llm_settings(settings):
    settings.LLM_MAX_RETRIES = 2
    settings.LLM_RETRY_BACKOFF_SECONDS = 0.01
    settings.LLM_MAX_RETRY_WAIT_SECONDS = 10
    settings.LLM_BREAKER_FAILURES = 5
    settings.LLM_BREAKER_COOLDOWN_SECONDS = 30


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fake2():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fake_anthropic():
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def make_model(developer):
    def make(
        server=None,
        *,
        provider="openai_compatible",
        model_name="fake-1",
        key=None,
        input_price="0",
        output_price="0",
        **fields,
    ):
        n = next(_names)
        if key is not None:
            fields["api_key_secret"] = secret_create(owner=developer, name=f"key-{n}", value=key)
        if server is not None:
            fields.setdefault("base_url", server.url)
        return model_config_create(
            owner=developer,
            actor=developer,
            name=f"model-{n}",
            provider=provider,
            model_name=model_name,
            input_price_per_million=Decimal(input_price),
            output_price_per_million=Decimal(output_price),
            **fields,
        )

    return make


def ask(text="Hello", **kwargs) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kwargs)


def collect(deltas) -> tuple[list[str], object]:
    texts, response = [], None
    for delta in deltas:
        if delta.response is not None:
            response = delta.response
        elif delta.content:
            texts.append(delta.content)
    return texts, response


# --- OpenAI-compatible ----------------------------------------------------------------------------


def test_plain_text_with_usage_and_cost(fake, make_model):
    model = make_model(fake, input_price="2.5", output_price="10")
    fake.push(Reply.text("hi there", usage=(12, 3)))
    response = chat(model, ask("Hello", temperature=0.3))
    assert response.content == "hi there"
    assert response.tool_calls == []
    assert response.finish_reason == "stop"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.model == "fake-1"
    assert response.model_config_id == model.pk
    assert response.provider == "openai_compatible"
    assert response.cost_usd == Decimal("12") * Decimal("2.5") / 10**6 + Decimal("3") * Decimal("10") / 10**6
    assert response.cost_usd == Decimal("0.00006")
    assert (response.attempts, response.fallback_used) == (1, False)
    [request] = fake.requests
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == "fake-1"
    assert request.body["messages"] == [{"role": "user", "content": "Hello"}]
    assert request.body["temperature"] == 0.3
    assert "tools" not in request.body and "stream" not in request.body


def test_model_default_parameters_apply_where_the_request_sets_none(fake, make_model):
    model = make_model(
        fake, default_parameters={"temperature": 0.2, "max_tokens": 50, "stop": ["END"], "seed": 7}
    )
    chat(model, ask(temperature=0.9))
    body = fake.requests[0].body
    assert (body["temperature"], body["max_tokens"], body["stop"], body["seed"]) == (0.9, 50, ["END"], 7)


def test_several_tool_calls_and_the_round_trip_of_their_results(fake, make_model):
    model = make_model(fake)
    fake.push(Reply.tool_calls([("get_weather", {"city": "Oslo"}), ("get_time", {"tz": "CET"})]))
    request = ask("Weather and time in Oslo?", tools=[WEATHER_TOOL, TIME_TOOL], parallel_tool_calls=False)
    response = chat(model, request)
    assert response.finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in response.tool_calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_time", {"tz": "CET"}),
    ]
    assert len({c.id for c in response.tool_calls}) == 2
    body = fake.requests[0].body
    assert body["tools"] == [WEATHER_TOOL, TIME_TOOL]
    assert body["parallel_tool_calls"] is False

    assistant = response.as_message()
    results = [
        {"role": "tool", "tool_call_id": call.id, "content": f"result {i}"}
        for i, call in enumerate(response.tool_calls)
    ]
    fake.push(Reply.text("Sunny, 14:00"))
    final = chat(model, ChatRequest(messages=[*request.messages, assistant, *results], tools=request.tools))
    assert final.content == "Sunny, 14:00"
    sent = fake.requests[1].body["messages"]
    assert sent[1] == assistant
    assert sent[2:] == results


def test_streaming_text_tool_call_arguments_split_across_chunks_and_usage(fake, make_model):
    model = make_model(fake, input_price="1", output_price="1")
    fake.push(
        Reply.tool_calls(
            [("get_weather", {"city": "Oslo", "unit": "celsius"}), ("get_time", {"tz": "Europe/Oslo"})],
            content="Let me look that up for you",
            usage=(40, 17),
        )
    )
    texts, response = collect(chat_stream(model, ask("Weather?", tools=[WEATHER_TOOL, TIME_TOOL])))
    assert len(texts) > 3
    assert "".join(texts) == "Let me look that up for you" == response.content
    assert [(c.name, json.loads(c.arguments)) for c in response.tool_calls] == [
        ("get_weather", {"city": "Oslo", "unit": "celsius"}),
        ("get_time", {"tz": "Europe/Oslo"}),
    ]
    assert all(c.id for c in response.tool_calls)
    assert response.finish_reason == "tool_calls"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (40, 17)
    assert response.cost_usd == Decimal("0.000057")
    body = fake.requests[0].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_stream_is_retried_before_its_first_delta(fake, make_model):
    model = make_model(fake)
    fake.push(Reply.error(503), Reply.text("second try"))
    texts, response = collect(chat_stream(model, ask()))
    assert "".join(texts) == "second try"
    assert response.attempts == 2
    assert len(fake.requests) == 2


def test_stream_stopped_early_closes_the_span(fake, make_model):
    model = make_model(fake)
    fake.push(Reply.text("one two three four five six", chunk_delay=0.05))
    stream = chat_stream(model, ask())
    first = next(stream)
    assert first.content == "one"
    stream.close()
    span = Span.objects.get(name="chat fake-1")
    assert span.status == "ok"
    assert span.attributes["agentmesh.stream.completed"] is False
    assert span.end_time is not None


def test_server_environment_credentials_never_reach_the_endpoint(fake, make_model, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-server-environment")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-server")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-server")
    model = make_model(fake)  # no key configured
    chat(model, ask())
    headers = fake.requests[0].headers
    assert headers["authorization"] == "Bearer no-key"
    assert "openai-organization" not in headers and "openai-project" not in headers


def test_azure_openai_deployment_url_version_and_key_header(fake, make_model):
    model = make_model(
        fake,
        provider="azure_openai",
        model_name="my-deployment",
        key="azure-key-0123456789",
        api_version="2024-10-21",
        base_url=fake.root,  # the resource endpoint
    )
    assert chat(model, ask(max_tokens=20)).content == "ok"
    [request] = fake.requests
    assert request.path == "/openai/deployments/my-deployment/chat/completions"
    assert request.query["api-version"] == "2024-10-21"
    assert request.headers["api-key"] == "azure-key-0123456789"
    assert request.body["max_tokens"] == 20


def test_openai_gets_max_completion_tokens(fake, make_model):
    model = make_model(fake, provider="openai", model_name="gpt-fake", key="sk-0123456789")
    chat(model, ask(max_tokens=20))
    body = fake.requests[0].body
    assert body["max_completion_tokens"] == 20 and "max_tokens" not in body


def test_redirects_are_not_followed(fake, fake2, make_model):
    """A redirect would carry the API key to another host: it is an error, not followed, not retried."""
    model = make_model(fake, key="sk-0123456789")
    fake.push(Reply.error(307, headers={"location": f"{fake2.url}/chat/completions"}))
    with pytest.raises(LLMError) as info:
        chat(model, ask())
    assert (info.value.kind, info.value.status) == ("upstream", 307)
    assert len(fake.requests) == 1
    assert fake2.requests == []


def test_a_stream_longer_than_the_timeout_is_cut(fake, make_model):
    model = make_model(fake)
    list(chat_stream(model, ask()))  # warm up: the first call in a process imports the SDK (~0.5 s)
    Span.objects.all().delete()
    fake.push(Reply.text("one two three four five six seven eight", chunk_delay=0.15))
    texts = []
    with pytest.raises(LLMError) as info:
        for delta in chat_stream(model, ask(timeout=0.5)):
            texts.append(delta.content)
    assert info.value.kind == "timeout"
    assert 1 <= len(texts) < 8
    assert Span.objects.get(name="chat fake-1").status == "error"


# --- Anthropic ------------------------------------------------------------------------------------

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Weather and time in Oslo?"},
    {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            },
            {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": ""}},
        ],
    },
    {"role": "tool", "tool_call_id": "toolu_1", "content": "12 degrees"},
    {"role": "tool", "tool_call_id": "toolu_2", "content": "14:00"},
    {"role": "user", "content": "Thanks, summarise."},
]


def test_anthropic_maps_messages_tools_and_the_response(fake_anthropic, make_model):
    model = make_model(
        fake_anthropic, provider="anthropic", model_name="claude-fake", key="sk-ant-test-key-123"
    )
    fake_anthropic.push(
        Reply.tool_calls([("get_weather", {"city": "Bergen"})], content="One more.", usage=(30, 9))
    )
    response = chat(model, ChatRequest(messages=CONVERSATION, tools=[WEATHER_TOOL, TIME_TOOL], temperature=0))
    assert response.content == "One more."
    assert [(c.id, c.name, json.loads(c.arguments)) for c in response.tool_calls] == [
        (response.tool_calls[0].id, "get_weather", {"city": "Bergen"})
    ]
    assert response.tool_calls[0].id.startswith("toolu_")
    assert response.finish_reason == "tool_calls"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (30, 9)
    assert response.model == "claude-fake"

    [request] = fake_anthropic.requests
    assert request.path == "/v1/messages"
    # anthropic 2.x sends an API key as a bearer token (1.x and earlier used x-api-key).
    assert request.headers["authorization"] == "Bearer sk-ant-test-key-123"
    assert request.headers["anthropic-version"]
    body = request.body
    assert body["model"] == "claude-fake"
    assert body["max_tokens"] == 1024  # required by Anthropic; the default when the request has none
    assert body["temperature"] == 0
    assert body["system"] == "You are terse."
    assert body["messages"] == [
        {"role": "user", "content": "Weather and time in Oslo?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",  # both tool results and the next user text in one user message, results first
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "12 degrees"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "14:00"},
                {"type": "text", "text": "Thanks, summarise."},
            ],
        },
    ]
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        },
        {"name": "get_time", "description": "Time in a zone", "input_schema": {"type": "object"}},
    ]
    assert "tool_choice" not in body


def test_anthropic_stop_reasons_and_options(fake_anthropic, make_model):
    model = make_model(fake_anthropic, provider="anthropic", model_name="claude-fake", key="sk-ant-x-123456")
    fake_anthropic.push(Reply.text("cut sho", finish_reason="length"), Reply.text('{"a": 1}'))
    assert chat(model, ask(max_tokens=5)).finish_reason == "length"
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    response = chat(
        model,
        ask(
            tools=[WEATHER_TOOL],
            parallel_tool_calls=False,
            response_format={"type": "json_schema", "json_schema": {"name": "out", "schema": schema}},
        ),
    )
    assert response.finish_reason == "stop"
    first, second = (r.body for r in fake_anthropic.requests)
    assert first["max_tokens"] == 5
    assert second["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert second["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


def test_anthropic_streaming_text_and_tool_input_json_deltas(fake_anthropic, make_model):
    model = make_model(fake_anthropic, provider="anthropic", model_name="claude-fake", key="sk-ant-x-123456")
    fake_anthropic.push(
        Reply.tool_calls(
            [("get_weather", {"city": "Oslo", "days": 3}), ("get_time", {"tz": "CET"})],
            content="Looking it up now",
            usage=(25, 11),
        )
    )
    texts, response = collect(chat_stream(model, ChatRequest(messages=CONVERSATION, tools=[WEATHER_TOOL])))
    assert len(texts) == 4
    assert "".join(texts) == "Looking it up now" == response.content
    assert [(c.name, json.loads(c.arguments)) for c in response.tool_calls] == [
        ("get_weather", {"city": "Oslo", "days": 3}),
        ("get_time", {"tz": "CET"}),
    ]
    assert response.finish_reason == "tool_calls"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (25, 11)
    assert fake_anthropic.requests[0].body["stream"] is True


def test_anthropic_streams_invalid_tool_arguments_as_the_model_sent_them(fake_anthropic, make_model):
    model = make_model(fake_anthropic, provider="anthropic", model_name="claude-fake", key="sk-ant-x-123456")
    fake_anthropic.push(Reply.tool_calls([("get_weather", '{"city": "Os')]))
    _texts, response = collect(chat_stream(model, ask(tools=[WEATHER_TOOL])))
    assert response.tool_calls[0].arguments == '{"city": "Os'


def test_anthropic_without_a_key_is_a_config_error(fake_anthropic, make_model):
    model = make_model(fake_anthropic, provider="anthropic", model_name="claude-fake", key="sk-ant-x-123456")
    model.api_key_secret = None  # as if the key had been detached; the provider requires one
    with pytest.raises(LLMError) as info:
        chat(model, ask())
    assert info.value.kind == "config"
    assert fake_anthropic.requests == []


def test_to_anthropic_skips_empty_messages_and_joins_system_prompts():
    system, messages = to_anthropic(
        [
            {"role": "system", "content": "A."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None},
            {"role": "system", "content": [{"type": "text", "text": "B."}]},
            {"role": "user", "content": [{"type": "text", "text": "there"}]},
        ]
    )
    assert system == "A.\n\nB."
    assert messages == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "there"}]}
    ]


# --- retries, timeouts, fallbacks, breaker --------------------------------------------------------


def test_429_with_retry_after_is_retried_after_that_wait(fake, make_model):
    model = make_model(fake)
    fake.push(Reply.error(429, retry_after=1), Reply.text("ok now"))
    started = time.monotonic()
    response = chat(model, ask())
    elapsed = time.monotonic() - started
    assert response.content == "ok now"
    assert response.attempts == 2
    assert len(fake.requests) == 2
    assert 0.9 <= elapsed < 3


def test_retry_after_ms_wins_and_each_wait_is_capped(fake, make_model, settings):
    model = make_model(fake)
    fake.push(Reply.error(503, retry_after_ms=50, retry_after=30), Reply.text("ok"))
    started = time.monotonic()
    assert chat(model, ask()).content == "ok"
    assert time.monotonic() - started < 1
    settings.LLM_MAX_RETRY_WAIT_SECONDS = 0.1
    fake.push(Reply.error(429, retry_after=30), Reply.text("ok"))
    started = time.monotonic()
    assert chat(model, ask()).content == "ok"
    assert time.monotonic() - started < 1


def test_retry_after_header_forms():
    assert retry_after_seconds({"retry-after": "2"}) == 2
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_500s_exhaust_the_retries_then_the_fallback_answers(fake, fake2, make_model):
    backup = make_model(fake2, model_name="fake-2", input_price="1", output_price="3")
    primary = make_model(fake, model_name="fake-1", input_price="100", output_price="100", fallback=backup)
    fake.push(Reply.error(500), Reply.error(502), Reply.error(500))
    fake2.push(Reply.text("from the fallback", usage=(10, 20)))
    response = chat(primary, ask())
    assert response.content == "from the fallback"
    assert response.fallback_used is True
    assert response.model_config_id == backup.pk
    assert response.model == "fake-2"
    assert response.cost_usd == Decimal("0.00007")  # 10 x 1 / 1e6 + 20 x 3 / 1e6: the fallback's prices
    assert response.attempts == 4
    assert len(fake.requests) == 3  # the first try and LLM_MAX_RETRIES retries
    assert len(fake2.requests) == 1
    event = ObservabilityEvent.objects.get(type="llm.fallback")
    assert event.payload["fallback_model_config_id"] == str(backup.pk)
    span = Span.objects.get(name="chat fake-1")
    assert span.attributes["agentmesh.fallback_used"] is True
    assert span.attributes["agentmesh.model_config.id"] == str(backup.pk)
    assert span.attributes["gen_ai.response.model"] == "fake-2"
    assert event.span_id == span.span_id


def test_500s_without_a_fallback_fail_as_upstream(fake, make_model):
    model = make_model(fake)
    fake.push(Reply.error(500), Reply.error(500), Reply.error(500))
    with pytest.raises(LLMError) as info:
        chat(model, ask())
    assert (info.value.kind, info.value.status) == ("upstream", 500)
    assert len(fake.requests) == 3


def test_400_is_neither_retried_nor_sent_to_the_fallback(fake, fake2, make_model):
    primary = make_model(fake, fallback=make_model(fake2, model_name="fake-2"))
    fake.push(Reply.error(400, message="messages: invalid"))
    with pytest.raises(LLMError) as info:
        chat(primary, ask())
    assert (info.value.kind, info.value.status) == ("bad_request", 400)
    assert "messages: invalid" in str(info.value)
    assert len(fake.requests) == 1
    assert fake2.requests == []


def test_401_is_not_retried_but_falls_back(fake, fake2, make_model):
    primary = make_model(fake, fallback=make_model(fake2, model_name="fake-2"))
    fake.push(Reply.error(401))
    response = chat(primary, ask())
    assert response.fallback_used is True
    assert len(fake.requests) == 1


def test_the_chain_skips_inactive_fallbacks_and_reports_every_failure(fake, fake2, make_model, developer):
    last = make_model(fake2, model_name="fake-3")
    middle = make_model(fake2, model_name="fake-2", fallback=last)
    primary = make_model(fake, fallback=middle)
    model_config_update(model_config=middle, actor=developer, is_active=False)
    primary.refresh_from_db()
    fake.push(Reply.error(403))
    fake2.push(Reply.error(401))
    with pytest.raises(LLMError) as info:
        chat(primary, ask())
    assert info.value.kind == "auth"
    assert "model-" in str(info.value) and "Every model failed" in str(info.value)
    assert [r.body["model"] for r in fake2.requests] == ["fake-3"]


def test_slow_reply_beyond_the_timeout_is_a_timeout(fake, make_model):
    model = make_model(fake)
    fake.push(Reply.text("late", delay=2.0))
    started = time.monotonic()
    with pytest.raises(LLMError) as info:
        chat(model, ask(timeout=0.5))
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < 1.5


def test_breaker_opens_fails_fast_then_half_opens_after_the_cooldown(fake, make_model, settings):
    settings.LLM_MAX_RETRIES = 0
    settings.LLM_BREAKER_FAILURES = 2
    settings.LLM_BREAKER_COOLDOWN_SECONDS = 0.4
    model = make_model(fake)
    fake.push(Reply.error(500), Reply.error(500))
    for _ in range(2):
        with pytest.raises(LLMError):
            chat(model, ask())
    assert ObservabilityEvent.objects.filter(type="llm.circuit_opened").count() == 1
    with pytest.raises(LLMError) as info:
        chat(model, ask())
    assert info.value.kind == "circuit_open"
    assert len(fake.requests) == 2  # failed fast: nothing sent

    time.sleep(0.45)  # half-open: one trial call; it fails, so the breaker opens again
    fake.push(Reply.error(500))
    with pytest.raises(LLMError) as info:
        chat(model, ask())
    assert info.value.kind == "upstream"
    with pytest.raises(LLMError) as info:
        chat(model, ask())
    assert info.value.kind == "circuit_open"
    assert len(fake.requests) == 3

    time.sleep(0.45)  # the next trial succeeds and closes it
    assert chat(model, ask()).content == "ok"
    assert chat(model, ask()).content == "ok"
    assert len(fake.requests) == 5


def test_open_breaker_sends_calls_to_the_fallback(fake, fake2, make_model, settings):
    settings.LLM_MAX_RETRIES = 0
    settings.LLM_BREAKER_FAILURES = 1
    primary = make_model(fake, fallback=make_model(fake2, model_name="fake-2"))
    fake.push(Reply.error(503))
    assert chat(primary, ask()).fallback_used is True  # this failure opens the breaker
    response = chat(primary, ask())
    assert response.fallback_used is True
    assert len(fake.requests) == 1
    assert len(fake2.requests) == 2


def test_a_bad_request_does_not_count_against_the_breaker(fake, make_model, settings):
    settings.LLM_MAX_RETRIES = 0
    settings.LLM_BREAKER_FAILURES = 2
    model = make_model(fake)
    fake.push(Reply.error(500), Reply.error(400), Reply.error(500), Reply.text("fine"))
    for _ in range(3):
        with pytest.raises(LLMError):
            chat(model, ask())
    assert chat(model, ask()).content == "fine"  # 500, 400 (the endpoint is up: reset), 500: still closed


def test_inactive_model_is_a_config_error(fake, make_model, developer):
    model = make_model(fake)
    model_config_update(model_config=model, actor=developer, is_active=False)
    with pytest.raises(LLMError) as info:
        chat(model, ask())
    assert info.value.kind == "config"
    with pytest.raises(LLMError) as info:
        chat_stream(model, ask())
    assert info.value.kind == "config"
    assert fake.requests == []


# --- observability and secrets --------------------------------------------------------------------


def test_a_chat_span_with_the_gen_ai_attributes(fake, make_model, developer):
    model = make_model(fake, input_price="3", output_price="15")
    fake.push(Reply.text("hi", usage=(100, 20), model="fake-1-2025"))
    chat(model, ask(max_tokens=64), actor=developer)
    span = Span.objects.get(name="chat fake-1")
    assert span.kind == "llm" and span.status == "ok"
    assert span.user_id == developer.pk
    attributes = span.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai_compatible"
    assert attributes["gen_ai.request.model"] == "fake-1"
    assert attributes["gen_ai.response.model"] == "fake-1-2025"
    assert attributes["gen_ai.request.max_tokens"] == 64
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (100, 20)
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert Decimal(attributes["agentmesh.cost_usd"]) == Decimal("0.0006")
    assert attributes["agentmesh.model_config.id"] == str(model.pk)
    assert attributes["agentmesh.fallback_used"] is False
    assert (span.model, span.input_tokens, span.output_tokens) == ("fake-1", 100, 20)
    assert span.cost_usd == Decimal("0.000600")


def test_a_failed_call_has_an_error_span(fake, make_model):
    model = make_model(fake)
    fake.push(Reply.error(400))
    with pytest.raises(LLMError):
        chat(model, ask())
    span = Span.objects.get(name="chat fake-1")
    assert span.status == "error"
    assert span.attributes["error.type"] == "bad_request"
    assert "400" in span.error


def test_the_api_key_reaches_the_server_and_nothing_else(fake, fake_anthropic, make_model, caplog):
    caplog.set_level(logging.DEBUG)  # the SDKs' and our own debug logs too
    openai_key, anthropic_key = "sk-openai-TOPSECRET-0123456789", "sk-ant-TOPSECRET-9876543210"
    openai_model = make_model(fake, key=openai_key)
    anthropic_model = make_model(
        fake_anthropic, provider="anthropic", model_name="claude-fake", key=anthropic_key
    )
    chat(openai_model, ask())
    collect(chat_stream(anthropic_model, ask()))
    assert fake.requests[0].headers["authorization"] == f"Bearer {openai_key}"
    assert fake_anthropic.requests[0].headers["authorization"] == f"Bearer {anthropic_key}"
    # A provider quoting the key in its error message: the message is scrubbed everywhere.
    fake.push(Reply.error(401, message=f"Incorrect API key provided: {openai_key}"))
    with pytest.raises(LLMError) as info:
        chat(openai_model, ask())
    assert openai_key not in str(info.value)
    fake_anthropic.push(Reply.error(500, message=f"bad key {anthropic_key}"))
    fake_anthropic.push(Reply.error(500, message=f"bad key {anthropic_key}"))
    fake_anthropic.push(Reply.error(500, message=f"bad key {anthropic_key}"))
    with pytest.raises(LLMError) as info:
        collect(chat_stream(anthropic_model, ask()))
    assert anthropic_key not in str(info.value)

    assert Span.objects.filter(kind="llm").count() == 4
    stored = json.dumps(
        [
            *Span.objects.values("name", "error", "attributes"),
            *ObservabilityEvent.objects.values("type", "message", "payload"),
            *LogRecord.objects.values("message", "exception"),
            *(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records),
        ],
        default=str,
    )
    assert caplog.records
    for key in (openai_key, anthropic_key):
        assert key not in stored
        assert key[-10:] not in stored


def test_refused_base_url_sends_no_request(make_model, settings, monkeypatch):
    settings.SAFE_HTTP_ALLOWLIST = ["10.0.0.1"]  # allowed when it was saved ...
    model = make_model(model_name="fake-1", base_url="http://10.0.0.1:8000/v1")
    settings.SAFE_HTTP_ALLOWLIST = []  # ... and no longer
    connects = []
    original = httpcore2.SyncBackend.connect_tcp

    def spy(self, host, port, *args, **kwargs):
        connects.append((host, port))
        return original(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore2.SyncBackend, "connect_tcp", spy)
    started = time.monotonic()
    with pytest.raises(LLMError) as info:
        chat(model, ask())
    assert info.value.kind == "refused"
    assert "10.0.0.1" in str(info.value)
    assert connects == []
    assert time.monotonic() - started < 1  # not retried


# --- echo -----------------------------------------------------------------------------------------


@pytest.fixture
def echo(make_model):
    return make_model(provider="echo", model_name="", input_price="1", output_price="1")


def test_echo_is_described_as_a_demo_provider():
    description = adapter_for("echo").describe()
    assert "DEMO" in description and "not a language model" in description


def test_echo_rules(echo):
    reply = chat(echo, ask("Hello there"))
    assert (reply.content, reply.finish_reason, reply.model) == ("Echo: Hello there", "stop", "echo")
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (2, 3)
    assert reply.cost_usd == Decimal("0.000005")

    summary = chat(echo, ask("summarize: Oslo is the capital of Norway. It is cold. Very."))
    assert summary.content == "Oslo is the capital of Norway."
    long = " ".join(f"w{i}" for i in range(30))
    assert chat(echo, ask(f"summarize: {long}")).content == " ".join(f"w{i}" for i in range(20))

    call = chat(echo, ask('call get_weather {"city": "Oslo"}', tools=[WEATHER_TOOL]))
    assert call.finish_reason == "tool_calls" and call.content is None
    [tool_call] = call.tool_calls
    assert (tool_call.name, json.loads(tool_call.arguments)) == ("get_weather", {"city": "Oslo"})
    again = chat(echo, ask('call get_weather {"city": "Oslo"}', tools=[WEATHER_TOOL]))
    assert again.tool_calls[0].id == tool_call.id  # deterministic
    assert chat(echo, ask("call get_time", tools=[TIME_TOOL])).tool_calls[0].arguments == "{}"
    unknown = chat(echo, ask("call delete_everything {}", tools=[WEATHER_TOOL]))
    assert unknown.content == "Echo: call delete_everything {}" and unknown.tool_calls == []

    messages = [
        {"role": "user", "content": "call get_weather"},
        call.as_message(),
        {"role": "tool", "tool_call_id": tool_call.id, "content": "12 degrees"},
    ]
    assert (
        chat(echo, ChatRequest(messages=messages, tools=[WEATHER_TOOL])).content == "Tool result: 12 degrees"
    )

    structured = chat(echo, ask("hi", response_format={"type": "json_schema", "json_schema": {"name": "o"}}))
    assert json.loads(structured.content) == {"echo": "Echo: hi"}


def test_echo_streams_word_by_word(echo):
    texts, response = collect(chat_stream(echo, ask("one two three")))
    assert texts == ["Echo:", " one", " two", " three"]
    assert response.content == "Echo: one two three"
    assert response.model_config_id == echo.pk
    assert Span.objects.get(name="chat echo").attributes["gen_ai.usage.output_tokens"] == 4
