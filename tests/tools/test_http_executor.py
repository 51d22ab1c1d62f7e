"""The `http` executor against a real local API: mapping, auth from secrets, retries,
timeouts, response mapping, redaction and tracing."""

import base64

import pytest

from masterdata.services import secret_create
from observability.models import ObservabilityEvent, Span
from tools import services
from tools.models import ToolExecution

pytestmark = pytest.mark.django_db


def run(tool, owner, **arguments) -> ToolExecution:
    return services.tool_execute(tool=tool, arguments=arguments, actor=owner)


def test_arguments_go_to_path_query_header_and_body(developer, make_http_tool, fake_api):
    tool = make_http_tool(
        developer,
        name="post_echo",
        path="/echo/{section}",
        method="POST",
        parameters_schema={
            "type": "object",
            "properties": {
                "section": {"type": "string"},
                "page": {"type": "integer"},
                "trace": {"type": "string"},
                "title": {"type": "string"},
                "count": {"type": "integer"},
            },
        },
        config={
            "headers": {"X-Static": "yes"},
            "arguments_in": {"page": "query", "trace": {"in": "header", "name": "X-Trace"}},
        },
    )
    execution = run(tool, developer, section="a b/c", page=2, trace="t-1", title="Hi", count=3)
    assert execution.status == "succeeded", execution.error
    seen = execution.result
    assert seen["method"] == "POST"
    assert seen["path"] == "/echo/a%20b%2Fc"
    assert seen["query"] == {"page": "2"}
    assert seen["headers"]["x-trace"] == "t-1" and seen["headers"]["x-static"] == "yes"
    assert seen["body"] == {"title": "Hi", "count": 3}


def test_get_puts_arguments_in_the_query_and_body_root_sends_a_whole_body(developer, make_http_tool):
    get = make_http_tool(
        developer,
        name="search",
        path="/echo",
        parameters_schema={
            "type": "object",
            "properties": {"q": {"type": "string"}, "exact": {"type": "boolean"}},
        },
    )
    assert run(get, developer, q="cats", exact=True).result["query"] == {"q": "cats", "exact": "true"}
    put = make_http_tool(
        developer,
        name="replace",
        path="/echo",
        method="PUT",
        parameters_schema={"type": "object", "properties": {"body": {"type": "array"}}},
        config={"arguments_in": {"body": "body_root"}},
    )
    assert run(put, developer, body=[1, 2, 3]).result["body"] == [1, 2, 3]


@pytest.mark.parametrize(
    ("auth", "check"),
    [
        ({"type": "bearer"}, lambda seen: seen["headers"]["authorization"] == "Bearer tok-SECRET-42"),
        (
            {"type": "header", "name": "X-Api-Key"},
            lambda seen: seen["headers"]["x-api-key"] == "tok-SECRET-42",
        ),
        ({"type": "query", "name": "key"}, lambda seen: seen["query"]["key"] == "tok-SECRET-42"),
        (
            {"type": "basic", "username": "bob"},
            lambda seen: seen["headers"]["authorization"]
            == "Basic " + base64.b64encode(b"bob:tok-SECRET-42").decode(),
        ),
    ],
)
def test_auth_from_a_secret_reaches_the_server_and_nowhere_else(
    developer, make_http_tool, fake_api, auth, check
):
    secret = secret_create(owner=developer, name="api", value="tok-SECRET-42")
    tool = make_http_tool(
        developer, name="authed", path="/echo", config={"auth": {**auth, "secret_id": str(secret.pk)}}
    )
    execution = run(tool, developer)
    assert execution.status == "succeeded", execution.error
    assert check(fake_api.last())
    secret.refresh_from_db()
    assert secret.last_used_at is not None and secret.last_used_for == f"tool {tool.pk}"
    # the secret is in the server's echo (our test server repeats it) but in no record of ours
    assert "tok-SECRET-42" not in str(execution.arguments) + str(execution.metadata) + execution.error
    assert "tok-SECRET-42" not in str(list(Span.objects.values_list("attributes", flat=True)))


def test_secret_looking_arguments_are_redacted_in_the_record(developer, make_http_tool, fake_api):
    tool = make_http_tool(
        developer,
        name="login",
        path="/echo",
        method="POST",
        parameters_schema={
            "type": "object",
            "properties": {
                "user": {"type": "string"},
                "password": {"type": "string"},
                "pin": {"type": "string", "writeOnly": True},
                "nested": {"type": "object", "properties": {"api_key": {"type": "string"}}},
            },
        },
    )
    execution = run(tool, developer, user="bob", password="hunter2", pin="1234", nested={"api_key": "k"})
    assert fake_api.last()["body"]["password"] == "hunter2"  # the real call had the values
    assert execution.arguments == {
        "user": "bob",
        "password": "***",
        "pin": "***",
        "nested": {"api_key": "***"},
    }


def test_response_path_and_formats(developer, make_http_tool):
    picked = make_http_tool(developer, name="first_tag", config={"response": {"path": "$.tags[0]"}})
    assert run(picked, developer, item_id="1").result == "a"
    many = make_http_tool(developer, name="all_tags", config={"response": {"path": "$.tags[*]"}})
    assert run(many, developer, item_id="1").result == ["a", "b"]
    text = make_http_tool(developer, name="text", path="/text")
    assert run(text, developer).result == "hello, plain world"
    missing = make_http_tool(developer, name="missing", config={"response": {"path": "$.nope"}})
    failed = run(missing, developer, item_id="1")
    assert failed.status == "failed" and failed.error_kind == "response" and "$.nope" in failed.error
    not_json = make_http_tool(
        developer, name="not_json", path="/text", config={"response": {"format": "json"}}
    )
    assert run(not_json, developer).error_kind == "response"


def test_error_status_is_a_failed_execution_with_the_status(developer, make_http_tool):
    tool = make_http_tool(developer, name="status", path="/status/{code}")
    execution = run(tool, developer, code="404")
    assert execution.status == "failed" and execution.error_kind == "upstream"
    assert execution.metadata["http_status"] == 404 and "404" in execution.error
    assert execution.attempt == 1
    event = ObservabilityEvent.objects.get(type="tool.execution.failed")
    assert event.resource_id == str(execution.pk) and event.payload["error_kind"] == "upstream"


def test_idempotent_calls_retry_transient_failures(developer, make_http_tool, fake_api):
    tool = make_http_tool(developer, name="flaky", path="/flaky/get-a?fail=2", max_retries=2)
    execution = run(tool, developer)
    assert execution.status == "succeeded", execution.error
    assert execution.attempt == 3 and execution.result == {"ok": True, "calls": 3}


def test_post_is_not_retried_unless_the_tool_says_so(developer, make_http_tool, fake_api):
    once = make_http_tool(
        developer, name="post_once", path="/flaky/post-a?fail=1", method="POST", max_retries=3
    )
    execution = run(once, developer)
    assert execution.status == "failed" and execution.attempt == 1 and fake_api.calls["post-a"] == 1
    opted = make_http_tool(
        developer,
        name="post_retry",
        path="/flaky/post-b?fail=1",
        method="POST",
        max_retries=3,
        retry_non_idempotent=True,
    )
    assert run(opted, developer).attempt == 2


def test_client_errors_are_not_retried(developer, make_http_tool, fake_api):
    tool = make_http_tool(developer, name="bad", path="/status/400", max_retries=3)
    assert run(tool, developer).attempt == 1


def test_timeout_ends_the_call_as_timed_out(developer, make_http_tool):
    tool = make_http_tool(developer, name="slow", path="/slow?seconds=3", timeout_seconds=1)
    execution = run(tool, developer)
    assert execution.status == "timed_out" and execution.error_kind == "timeout"
    assert execution.duration_ms < 2900


def test_sync_wait_caps_the_timeout(developer, make_http_tool, settings):
    tool = make_http_tool(developer, name="slow", path="/slow?seconds=3", timeout_seconds=30)
    execution = services.tool_execute(tool=tool, arguments={}, actor=developer, timeout_cap=1)
    assert execution.status == "timed_out"


def test_response_size_is_capped(developer, make_http_tool, settings):
    settings.TOOLS_MAX_RESPONSE_BYTES = 10
    tool = make_http_tool(developer)
    execution = run(tool, developer, item_id="1")
    assert execution.status == "failed" and execution.error_kind == "response"


def test_each_execution_is_a_tool_span_with_gen_ai_attributes(developer, make_http_tool):
    from observability.services import span

    tool = make_http_tool(developer)
    with span("agent turn", kind="agent") as parent:
        execution = run(tool, developer, item_id="1")
    tool_span = Span.objects.get(kind="tool")
    assert tool_span.trace_id == parent.trace_id == execution.trace_id
    assert tool_span.parent_span_id == parent.span_id
    assert tool_span.status == "ok"
    attrs = tool_span.attributes
    assert attrs["gen_ai.operation.name"] == "execute_tool" and attrs["gen_ai.tool.name"] == "get_item"
    assert attrs["gen_ai.tool.call.id"] == str(execution.pk)


def test_failed_execution_span_is_an_error(developer, make_http_tool):
    tool = make_http_tool(developer, name="status", path="/status/{code}")
    run(tool, developer, code="500")
    assert Span.objects.get(kind="tool").status == "error"


def test_not_deployed_tools_are_refused_when_production_requires_it(developer, make_http_tool):
    from agentmesh.core.exceptions import ConflictError

    draft = make_http_tool(developer)
    with pytest.raises(ConflictError):
        services.tool_execute(tool=draft, arguments={"item_id": "1"}, actor=developer, require_deployed=True)
    live = make_http_tool(developer, name="live", deploy=True)
    assert (
        services.tool_execute(
            tool=live, arguments={"item_id": "1"}, actor=developer, require_deployed=True
        ).status
        == "succeeded"
    )


def test_a_write_sends_the_callers_idempotency_key_and_a_read_does_not(developer, make_http_tool, fake_api):
    post = make_http_tool(developer, name="post_echo", path="/echo", method="POST")
    services.tool_execute(tool=post, arguments={}, actor=developer, idempotency_key="step-1:2")
    assert fake_api.last()["headers"]["idempotency-key"] == "step-1:2"
    services.tool_execute(tool=post, arguments={}, actor=developer)
    assert "idempotency-key" not in fake_api.last()["headers"]
    get = make_http_tool(developer, name="get_echo", path="/echo")
    services.tool_execute(tool=get, arguments={}, actor=developer, idempotency_key="step-1:2")
    assert "idempotency-key" not in fake_api.last()["headers"]
