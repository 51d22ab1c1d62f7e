"""`mcp`: one tool on an MCP server, over Streamable HTTP, through the official `mcp` SDK client.

The SDK speaks HTTP with httpx2 (a fork of httpx) and takes the `httpx2.AsyncClient` to use, so every
request, including the SDK's redirects within the endpoint's origin, goes through
`safe_http.safe_async_client`: the SSRF guard resolves each host once, refuses forbidden addresses and
connects to the checked IP.

The SDK is async and the product's code is sync (Celery tasks, sync views that Django runs in a worker
thread without an event loop), so each call runs its own event loop with `anyio.run` in the calling
thread: connect, negotiate the protocol version, call, close the session.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import httpx2
import pydantic
from django.conf import settings
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, Implementation, TextContent
from mcp_types import Tool as MCPTool

from agentmesh.core import safe_http

from . import registry
from .base import (
    Check,
    ConfigInvalid,
    ErrorKind,
    Executor,
    ToolCall,
    ToolError,
    ToolOutput,
    check_secret_reference,
    secret_check,
)

if TYPE_CHECKING:
    from tools.models import Tool

T = TypeVar("T")

CLIENT_INFO = Implementation(name="agentmesh", version="1")
RETRYABLE_STATUSES = {408, 425, 429, 500, 502, 503, 504}
MAX_LIST_PAGES = 50
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
# RuntimeErrors the SDK raises when a result does not match the tool's declared output schema.
INVALID_RESULT = re.compile(r"^(Invalid structured content|Invalid schema for tool|Tool .* output schema)")

CONFIG_SCHEMA = {
    "type": "object",
    "required": ["url", "tool_name"],
    "additionalProperties": False,
    "properties": {
        "url": {
            "type": "string",
            "minLength": 1,
            "maxLength": 2000,
            "description": "http(s) URL of the MCP endpoint (Streamable HTTP), e.g. https://example.com/mcp",
        },
        "tool_name": {
            "type": "string",
            "minLength": 1,
            "maxLength": 256,
            "description": "Name of the tool on the MCP server.",
        },
        "headers_secret_id": {
            "type": "string",
            "description": "Secret whose value is a JSON object of HTTP headers, or a bare token sent as "
            "Authorization: Bearer <token>.",
        },
    },
}


class HeadersSecretInvalid(ValueError):
    pass


def headers_from_secret(value: str) -> dict[str, str]:
    """The headers a secret's value stands for: a JSON object of headers, or a bare bearer token."""
    text = value.strip()
    if not text:
        raise HeadersSecretInvalid("The headers secret is empty.")
    if not text.startswith("{"):
        if "\n" in text or "\r" in text:
            raise HeadersSecretInvalid("A bearer token in the headers secret must be one line.")
        return {"Authorization": f"Bearer {text}"}
    try:
        data = json.loads(text)
    except ValueError:
        raise HeadersSecretInvalid("The headers secret starts with { but is not valid JSON.") from None
    if not isinstance(data, dict):
        raise HeadersSecretInvalid("The headers secret must be a JSON object of header names to values.")
    for name, header_value in data.items():
        if not HEADER_NAME.match(name):
            raise HeadersSecretInvalid(f"The headers secret has an invalid header name {name!r}.")
        if not isinstance(header_value, str) or "\n" in header_value or "\r" in header_value:
            raise HeadersSecretInvalid(f"The value of the header {name} must be a one-line string.")
    return data


# --- talking to a server ------------------------------------------------------------------------
def _leaves(exc: BaseException):
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _translate(exc: BaseException, url: str, statuses: list[int], timeout: float) -> ToolError | None:
    """The ToolError for a failure of the SDK (which wraps its task failures in exception groups)."""
    leaves = list(_leaves(exc))

    def first(*types: type[BaseException]) -> Any:
        return next((leaf for leaf in leaves if isinstance(leaf, types)), None)

    if error := first(safe_http.UnsafeURLError):
        return ToolError(str(error), kind=ErrorKind.REFUSED)
    if error := first(safe_http.ResponseTooLarge):
        return ToolError(str(error), kind=ErrorKind.RESPONSE)
    if first(TimeoutError, httpx2.TimeoutException):
        return ToolError(
            f"The MCP server at {url} did not answer within {timeout:.1f}s.",
            kind=ErrorKind.TIMEOUT,
            retryable=True,
        )
    if error := first(MCPError):
        status = statuses[-1] if statuses else None
        where = f" (HTTP {status})" if status else ""
        return ToolError(
            f"The MCP server at {url} answered with an error{where}: {error.message}",
            kind=ErrorKind.UPSTREAM,
            retryable=status in RETRYABLE_STATUSES,
            details={"mcp_error_code": error.code, **({"http_status": status} if status else {})},
        )
    if error := first(httpx2.TransportError, OSError):
        return ToolError(
            f"Could not reach the MCP server at {url}: {str(error) or type(error).__name__}",
            kind=ErrorKind.UPSTREAM,
            retryable=True,
        )
    if error := first(httpx2.HTTPError, pydantic.ValidationError):
        return ToolError(
            f"The MCP server at {url} broke the protocol: {error}"[:2000], kind=ErrorKind.UPSTREAM
        )
    if (error := first(RuntimeError)) and INVALID_RESULT.match(str(error)):
        return ToolError(str(error)[:2000], kind=ErrorKind.RESPONSE)
    return None


async def _with_client(
    url: str, headers: dict[str, str], timeout: float, work: Callable[[Client], Awaitable[T]]
) -> T:
    statuses: list[int] = []

    async def remember_error_status(response: httpx2.Response) -> None:
        if response.status_code >= 400:
            statuses.append(response.status_code)

    max_bytes = settings.TOOLS_MAX_RESPONSE_BYTES
    try:
        # One deadline for connecting, negotiating, calling and closing. The HTTP timeouts are a bit
        # longer so that this deadline, not a read timeout deep in the SDK, is what ends a slow call.
        with anyio.fail_after(timeout):
            async with (
                safe_http.safe_async_client(
                    timeout=timeout + 1,
                    headers=headers,
                    max_response_bytes=max_bytes,
                    event_hooks={"response": [remember_error_status]},
                ) as http,
                Client(
                    streamable_http_client(url, http_client=http, max_sse_event_size=max_bytes),
                    client_info=CLIENT_INFO,
                    cache=None,
                ) as client,
            ):
                return await work(client)
    except Exception as exc:
        error = _translate(exc, url, statuses, timeout)
        if error is None:
            raise
        raise error from exc


def run_with_client(
    url: str, headers: dict[str, str], timeout: float, work: Callable[[Client], Awaitable[T]]
) -> T:
    """Connect to the MCP server at `url`, run `work(client)` and close, in an event loop of its own.
    Raises ToolError (kind refused, timeout, upstream or response) when the server cannot be used."""
    return anyio.run(_with_client, url, headers, max(0.05, timeout), work)


async def _all_tools(client: Client) -> list[MCPTool]:
    tools: list[MCPTool] = []
    cursor: str | None = None
    for _ in range(MAX_LIST_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def list_server_tools(url: str, headers: dict[str, str], timeout: float) -> list[MCPTool]:
    """Every tool the server lists (tools/list, all pages). Raises ToolError."""
    return run_with_client(url, headers, timeout, _all_tools)


def _output(result: CallToolResult) -> Any:
    """Structured content when the tool returned some, else its text, else the content items."""
    if result.structured_content is not None:
        return result.structured_content
    if not result.content:
        return None
    if all(isinstance(item, TextContent) for item in result.content):
        return "\n".join(item.text for item in result.content)
    return [item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in result.content]


def _text(result: CallToolResult) -> str:
    return "\n".join(item.text for item in result.content if isinstance(item, TextContent))


# --- the executor -------------------------------------------------------------------------------
class MCPExecutor(Executor):
    type = "mcp"
    label = "MCP server tool"
    description = (
        "Calls one tool on a Model Context Protocol server over Streamable HTTP. Headers (e.g. "
        "Authorization) come from a secret; the result is the tool's structured content or its text."
    )
    config_schema = CONFIG_SCHEMA

    def is_idempotent(self, tool: Tool) -> bool:
        return False  # an MCP tool may change things; the tool opts in with retry_non_idempotent

    def check_config(self, config: dict, *, owner) -> None:
        url = config["url"]
        try:
            safe_http.check_url(url, resolve=False)
        except safe_http.UnsafeURLError as exc:
            raise ConfigInvalid(str(exc), field="url") from None
        if httpx2.URL(url).userinfo:
            raise ConfigInvalid("Put credentials in the headers secret, not in the URL.", field="url")
        if config.get("headers_secret_id"):
            check_secret_reference(config["headers_secret_id"], owner=owner, field="headers_secret_id")

    @staticmethod
    def _headers(secret_id: str | None, reveal: Callable[[str], str]) -> dict[str, str]:
        if not secret_id:
            return {}
        try:
            return headers_from_secret(reveal(secret_id))
        except HeadersSecretInvalid as exc:
            raise ToolError(str(exc), kind=ErrorKind.CONFIG) from None

    def execute(self, call: ToolCall) -> ToolOutput:
        config = call.tool.config
        name = config["tool_name"]
        headers = self._headers(config.get("headers_secret_id"), call.reveal_secret)

        async def work(client: Client) -> CallToolResult:
            return await client.call_tool(name, call.arguments)

        result = run_with_client(config["url"], headers, call.remaining(), work)
        if result.is_error:
            raise ToolError(
                (_text(result) or f"The MCP tool {name} reported an error.")[:2000],
                kind=ErrorKind.TOOL_ERROR,
                details={"mcp_is_error": True, "output": _output(result)},
            )
        return ToolOutput(output=_output(result), metadata={"mcp_is_error": False})

    def live_checks(self, tool: Tool, *, actor) -> list[Check]:
        from masterdata.models import Secret
        from masterdata.services import secret_reveal

        config = tool.config
        checks: list[Check] = []
        secret_id = config.get("headers_secret_id")
        headers: dict[str, str] = {}
        if secret_id:
            check = secret_check(tool, secret_id, actor=actor)
            checks.append(check)
            if not check.ok:
                return checks
            secret = Secret.objects.get(pk=secret_id)
            try:
                headers = headers_from_secret(
                    secret_reveal(secret=secret, actor=None, purpose=f"validate tool {tool.pk}")
                )
            except HeadersSecretInvalid as exc:
                return [*checks, Check("headers_secret", False, str(exc))]
        try:
            tools = list_server_tools(config["url"], headers, float(settings.SAFE_HTTP_READ_TIMEOUT))
        except ToolError as exc:
            return [
                *checks,
                Check("server_reachable", False, str(exc)),
                Check("tool_listed", False, "Not checked: the server could not be used."),
            ]
        names = [t.name for t in tools]
        checks.append(Check("server_reachable", True, f"The server lists {len(names)} tools."))
        if config["tool_name"] in names:
            checks.append(Check("tool_listed", True))
        else:
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            checks.append(
                Check(
                    "tool_listed",
                    False,
                    f"The server lists no tool {config['tool_name']!r}"
                    + (f" (it has {shown})." if names else "."),
                )
            )
        return checks


registry.register(MCPExecutor())
