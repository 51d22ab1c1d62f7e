"""The `mcp` tool type and MCP import, against a real MCP server (the SDK's MCPServer over Streamable
HTTP, served by uvicorn on 127.0.0.1), through the tool services."""

import socket
import threading
import time
from collections.abc import Iterator

import anyio
import pytest
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError as MCPToolError

from agentmesh.core.exceptions import ServiceValidationError
from masterdata.services import secret_create
from tools.mcp_import import mcp_server_tools, tools_import_from_mcp
from tools.models import ExecutionStatus, Tool
from tools.services import tool_create, tool_execute, tool_validate

SERVER_TOOLS = {"add", "echo_headers", "fail", "crash", "slow", "big", "weather.forecast"}


def build_server() -> MCPServer:
    server = MCPServer("agentmesh-test")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def echo_headers(ctx: Context) -> dict[str, str]:
        """The Authorization and X-Team headers this call arrived with."""
        headers = ctx.headers or {}
        return {"authorization": headers.get("authorization", ""), "x_team": headers.get("x-team", "")}

    @server.tool()
    def fail() -> str:
        """Always fails with a message for the model (isError)."""
        raise MCPToolError("the thing broke")

    @server.tool(structured_output=False)
    def crash() -> str:
        """Raises an unexpected exception (the SDK still answers isError)."""
        raise RuntimeError("secret internals")

    @server.tool()
    async def slow(seconds: float) -> str:
        """Sleeps, then answers."""
        await anyio.sleep(seconds)
        return "done"

    @server.tool(structured_output=False)
    def big(size: int) -> str:
        """A long text."""
        return "x" * size

    @server.tool(name="weather.forecast", structured_output=False)
    def forecast(city: str, days: int = 3) -> str:
        """A name that is not a valid function name."""
        return f"sunny in {city} for {days} days"

    return server


@pytest.fixture(scope="module")
def mcp_url() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = build_server().streamable_http_app()
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the MCP server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def make_tool(developer, mcp_url):
    def make(tool_name: str, *, name: str | None = None, url: str | None = None, **fields) -> Tool:
        config = {"url": url or mcp_url, "tool_name": tool_name, **fields.pop("config", {})}
        return tool_create(owner=developer, name=name or tool_name, type="mcp", config=config, **fields)

    return make


def field_of(exc: ServiceValidationError) -> str:
    return next(iter(exc.detail))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- execute ------------------------------------------------------------------------------------
def test_execute_returns_the_structured_content(make_tool, developer):
    tool = make_tool("add", parameters_schema={"type": "object", "required": ["a", "b"]})
    execution = tool_execute(tool=tool, arguments={"a": 2, "b": 3}, actor=developer)
    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    # MCPServer returns an int as structured content {"result": 5} (and the text "5").
    assert execution.result == {"result": 5}
    assert execution.metadata == {"mcp_is_error": False}


def test_unstructured_result_is_the_text(make_tool, developer):
    tool = make_tool("weather.forecast", name="forecast")
    execution = tool_execute(tool=tool, arguments={"city": "Oslo"}, actor=developer)
    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert execution.result == "sunny in Oslo for 3 days"


def test_bearer_token_secret_reaches_the_server(make_tool, developer):
    secret = secret_create(owner=developer, name="mcp-token", value="tok-123")
    tool = make_tool("echo_headers", config={"headers_secret_id": str(secret.pk)})
    execution = tool_execute(tool=tool, arguments={}, actor=developer)
    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert execution.result == {"authorization": "Bearer tok-123", "x_team": ""}
    secret.refresh_from_db()
    assert secret.last_used_at is not None


def test_json_headers_secret_reaches_the_server(make_tool, developer):
    secret = secret_create(
        owner=developer, name="mcp-headers", value='{"Authorization": "Basic dTpw", "X-Team": "blue"}'
    )
    tool = make_tool("echo_headers", config={"headers_secret_id": str(secret.pk)})
    execution = tool_execute(tool=tool, arguments={}, actor=developer)
    assert execution.result == {"authorization": "Basic dTpw", "x_team": "blue"}


def test_invalid_json_headers_secret_is_a_config_error(make_tool, developer):
    secret = secret_create(owner=developer, name="bad-headers", value='{"Authorization": 42}')
    tool = make_tool("echo_headers", config={"headers_secret_id": str(secret.pk)})
    execution = tool_execute(tool=tool, arguments={}, actor=developer)
    assert (execution.status, execution.error_kind) == (ExecutionStatus.FAILED, "config")


@pytest.mark.parametrize(("tool_name", "message"), [("fail", "the thing broke"), ("crash", "crash")])
def test_is_error_fails_with_kind_tool_error(make_tool, developer, tool_name, message):
    tool = make_tool(tool_name)
    execution = tool_execute(tool=tool, arguments={}, actor=developer)
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error_kind == "tool_error"
    assert message in execution.error
    assert "secret internals" not in execution.error
    assert execution.metadata["mcp_is_error"] is True


def test_is_error_is_not_retried(make_tool, developer):
    tool = make_tool("fail", max_retries=3, retry_non_idempotent=True)
    execution = tool_execute(tool=tool, arguments={}, actor=developer)
    assert (execution.status, execution.attempt) == (ExecutionStatus.FAILED, 1)


def test_slow_tool_times_out_after_the_tool_timeout(make_tool, developer):
    tool = make_tool("slow", timeout_seconds=1)
    started = time.monotonic()
    execution = tool_execute(tool=tool, arguments={"seconds": 10}, actor=developer)
    assert execution.status == ExecutionStatus.TIMED_OUT
    assert execution.error_kind == "timeout"
    assert time.monotonic() - started < 3


def test_unknown_server_tool_is_a_tool_error(make_tool, developer):
    execution = tool_execute(tool=make_tool("nope"), arguments={}, actor=developer)
    assert (execution.status, execution.error_kind) == (ExecutionStatus.FAILED, "tool_error")
    assert "nope" in execution.error


def test_connection_failure_is_a_retryable_upstream_error(make_tool, developer):
    tool = make_tool(
        "add", url=f"http://127.0.0.1:{free_port()}/mcp", max_retries=1, retry_non_idempotent=True
    )
    execution = tool_execute(tool=tool, arguments={"a": 1, "b": 1}, actor=developer)
    assert (execution.status, execution.error_kind) == (ExecutionStatus.FAILED, "upstream")
    assert execution.attempt == 2  # retryable, and the tool opted in to retries


def test_an_endpoint_that_is_not_mcp_is_an_upstream_error(make_tool, developer, mcp_url):
    tool = make_tool("add", url=mcp_url.replace("/mcp", "/nothing-here"))
    execution = tool_execute(tool=tool, arguments={"a": 1, "b": 1}, actor=developer)
    assert (execution.status, execution.error_kind) == (ExecutionStatus.FAILED, "upstream")


def test_response_larger_than_the_tool_response_cap_fails(make_tool, developer, settings):
    settings.TOOLS_MAX_RESPONSE_BYTES = 20_000
    tool = make_tool("big")
    execution = tool_execute(tool=tool, arguments={"size": 1000}, actor=developer)
    assert execution.result == "x" * 1000
    execution = tool_execute(tool=tool, arguments={"size": 50_000}, actor=developer)
    assert (execution.status, execution.error_kind) == (ExecutionStatus.FAILED, "response"), execution.error


# --- the SSRF guard -----------------------------------------------------------------------------
def test_a_literal_private_address_is_refused_on_save(developer, settings):
    settings.SAFE_HTTP_ALLOWLIST = []
    with pytest.raises(ServiceValidationError) as info:
        tool_create(
            owner=developer,
            name="internal",
            type="mcp",
            config={"url": "http://10.0.0.1/mcp", "tool_name": "x"},
        )
    assert field_of(info.value) == "config.url"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_execution_is_refused_when_the_address_is_not_allow_listed(
    make_tool, developer, mcp_url, settings, host
):
    tool = make_tool("add", url=mcp_url.replace("127.0.0.1", host))  # allowed when saved
    settings.SAFE_HTTP_ALLOWLIST = []
    execution = tool_execute(tool=tool, arguments={"a": 1, "b": 1}, actor=developer)
    assert (execution.status, execution.error_kind) == (ExecutionStatus.FAILED, "refused")
    assert "loopback" in execution.error


def test_credentials_in_the_url_are_refused(developer, mcp_url):
    with pytest.raises(ServiceValidationError) as info:
        tool_create(
            owner=developer,
            name="creds",
            type="mcp",
            config={"url": mcp_url.replace("http://", "http://user:pw@"), "tool_name": "add"},
        )
    assert field_of(info.value) == "config.url"


def test_another_users_secret_cannot_be_referenced(developer, other_developer, mcp_url):
    secret = secret_create(owner=other_developer, name="theirs", value="tok")
    with pytest.raises(ServiceValidationError) as info:
        tool_create(
            owner=developer,
            name="stolen",
            type="mcp",
            config={"url": mcp_url, "tool_name": "add", "headers_secret_id": str(secret.pk)},
        )
    assert field_of(info.value) == "config.headers_secret_id"


def test_config_rejects_unknown_keys(developer, mcp_url):
    with pytest.raises(ServiceValidationError) as info:
        tool_create(
            owner=developer, name="x", type="mcp", config={"url": mcp_url, "tool_name": "add", "headers": {}}
        )
    assert field_of(info.value) == "config"


# --- validate -----------------------------------------------------------------------------------
def test_validate_passes_for_a_listed_tool(make_tool, developer):
    secret = secret_create(owner=developer, name="mcp-token", value="tok-123")
    tool = make_tool("add", config={"headers_secret_id": str(secret.pk)})
    checks = {c.name: c for c in tool_validate(tool=tool, actor=developer)}
    assert all(c.ok for c in checks.values()), checks
    assert {"server_reachable", "tool_listed", "secret_usable"} <= set(checks)
    tool.refresh_from_db()
    assert tool.status == "validated"


def test_validate_fails_for_a_tool_the_server_does_not_list(make_tool, developer):
    checks = {c.name: c for c in tool_validate(tool=make_tool("missing_tool"), actor=developer)}
    assert checks["server_reachable"].ok
    assert not checks["tool_listed"].ok
    assert "add" in checks["tool_listed"].message


def test_validate_fails_when_the_server_is_unreachable(make_tool, developer):
    tool = make_tool("add", url=f"http://127.0.0.1:{free_port()}/mcp")
    checks = {c.name: c for c in tool_validate(tool=tool, actor=developer)}
    assert not checks["server_reachable"].ok
    assert not checks["tool_listed"].ok


# --- discovery and import -----------------------------------------------------------------------
def test_server_tools_are_listed_with_their_input_schemas(developer, mcp_url):
    listed = {t["name"]: t for t in mcp_server_tools(url=mcp_url, owner=developer)}
    assert set(listed) == SERVER_TOOLS
    assert listed["add"]["description"] == "Add two integers."
    assert listed["add"]["inputSchema"]["required"] == ["a", "b"]
    assert listed["add"]["inputSchema"]["properties"]["a"]["type"] == "integer"


def test_import_creates_one_mcp_tool_per_server_tool(developer, mcp_url):
    existing = tool_create(
        owner=developer, name="add", type="mcp", config={"url": mcp_url, "tool_name": "add"}
    )
    secret = secret_create(owner=developer, name="mcp-token", value="tok-123")
    listed = {t["name"]: t for t in mcp_server_tools(url=mcp_url, owner=developer)}

    tools = tools_import_from_mcp(
        owner=developer, url=mcp_url, headers_secret_id=str(secret.pk), category="mcp-test"
    )

    by_server_name = {t.config["tool_name"]: t for t in tools}
    assert set(by_server_name) == SERVER_TOOLS
    assert by_server_name["add"].name == "add-2"  # "add" was taken
    assert by_server_name["weather.forecast"].name == "weather_forecast"
    for server_name, tool in by_server_name.items():
        assert tool.type == "mcp"
        assert tool.category == "mcp-test"
        assert tool.status == "draft"
        assert tool.parameters_schema == listed[server_name]["inputSchema"]
        assert tool.description == listed[server_name]["description"]
        assert tool.config == {"url": mcp_url, "tool_name": server_name, "headers_secret_id": str(secret.pk)}
    assert Tool.objects.filter(owner=developer).count() == len(SERVER_TOOLS) + 1
    existing.refresh_from_db()
    assert existing.config["tool_name"] == "add"

    execution = tool_execute(tool=by_server_name["echo_headers"], arguments={}, actor=developer)
    assert execution.result["authorization"] == "Bearer tok-123"
    execution = tool_execute(
        tool=by_server_name["weather.forecast"], arguments={"city": "Rome"}, actor=developer
    )
    assert execution.result == "sunny in Rome for 3 days"


def test_import_of_named_tools_only(developer, mcp_url):
    tools = tools_import_from_mcp(owner=developer, url=mcp_url, names=["slow", "add"])
    assert [t.name for t in tools] == ["slow", "add"]
    with pytest.raises(ServiceValidationError) as info:
        tools_import_from_mcp(owner=developer, url=mcp_url, names=["add", "nope"])
    assert field_of(info.value) == "names[1]"
    assert Tool.objects.filter(owner=developer).count() == 2


@pytest.mark.parametrize("case", ["refused", "unreachable", "not_mcp"])
def test_discovery_errors_are_validation_errors_on_url(developer, mcp_url, settings, case):
    url = {
        "refused": mcp_url,
        "unreachable": f"http://127.0.0.1:{free_port()}/mcp",
        "not_mcp": mcp_url.replace("/mcp", "/nothing-here"),
    }[case]
    if case == "refused":
        settings.SAFE_HTTP_ALLOWLIST = []
    with pytest.raises(ServiceValidationError) as info:
        tools_import_from_mcp(owner=developer, url=url)
    assert field_of(info.value) == "url"
    assert not Tool.objects.filter(owner=developer).exists()


def test_import_mcp_through_the_api(client_for, developer, plain_user, mcp_url):
    client = client_for(developer)
    response = client.post("/api/v1/tools/import-mcp", {"url": mcp_url, "names": ["add"]}, format="json")
    assert response.status_code == 201, response.json()
    [tool] = response.json()
    assert tool["type"] == "mcp" and tool["name"] == "add" and tool["status"] == "draft"
    assert tool["config"] == {"url": mcp_url, "tool_name": "add"}
    report = client.post(f"/api/v1/tools/{tool['id']}/validate").json()
    assert report["valid"] is True, report
    run = client.post(f"/api/v1/tools/{tool['id']}/execute", {"arguments": {"a": 2, "b": 3}}, format="json")
    assert run.json()["status"] == "succeeded" and run.json()["result"] == {"result": 5}
    refused = client_for(plain_user).post("/api/v1/tools/import-mcp", {"url": mcp_url}, format="json")
    assert refused.status_code == 403
    bad = client.post("/api/v1/tools/import-mcp", {"url": "http://127.0.0.1:1/mcp"}, format="json")
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "url"
