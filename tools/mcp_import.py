"""Discover the tools of an MCP server and import them as `mcp` tools."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from agentmesh.core import safe_http
from agentmesh.core.exceptions import ServiceValidationError

from .executors.base import ConfigInvalid, ToolError, check_secret_reference
from .executors.mcp import HeadersSecretInvalid, headers_from_secret, list_server_tools
from .models import Tool
from .naming import owner_tool_names, sanitize_name, unique_name
from .services import tool_create

EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def _headers(*, owner, url: str, headers_secret_id: str | None) -> dict[str, str]:
    from masterdata.models import Secret
    from masterdata.services import secret_reveal

    try:
        safe_http.check_url(url, resolve=False)
    except safe_http.UnsafeURLError as exc:
        raise ServiceValidationError(str(exc), field="url") from None
    if not headers_secret_id:
        return {}
    try:
        check_secret_reference(headers_secret_id, owner=owner, field="headers_secret_id")
    except ConfigInvalid as exc:
        raise ServiceValidationError(str(exc), field="headers_secret_id") from None
    secret = Secret.objects.get(pk=headers_secret_id)
    try:
        return headers_from_secret(
            secret_reveal(secret=secret, actor=owner, purpose=f"MCP import from {url}")
        )
    except HeadersSecretInvalid as exc:
        raise ServiceValidationError(str(exc), field="headers_secret_id") from None


def mcp_server_tools(*, url: str, headers_secret_id: str | None = None, owner) -> list[dict]:
    """The tools the MCP server at `url` lists: [{"name", "description", "inputSchema"}].

    Raises ServiceValidationError on `url` when the server cannot be reached or used (refused by the
    SSRF guard, timeout, not an MCP endpoint, authentication failure...).
    """
    headers = _headers(owner=owner, url=url, headers_secret_id=headers_secret_id)
    try:
        tools = list_server_tools(url, headers, float(settings.SAFE_HTTP_READ_TIMEOUT))
    except ToolError as exc:
        raise ServiceValidationError(str(exc), field="url") from None
    return [
        {"name": t.name, "description": t.description or "", "inputSchema": t.input_schema} for t in tools
    ]


def tools_import_from_mcp(
    *,
    owner,
    url: str,
    headers_secret_id: str | None = None,
    names: list[str] | None = None,
    category: str = "",
) -> list[Tool]:
    """Create one draft `mcp` tool per tool of the server (or per name in `names`), all or none.

    Names are made valid function names and de-duplicated against the owner's tools; each tool keeps
    the server's description and input schema and calls the server's tool by its original name.
    """
    listed = mcp_server_tools(url=url, headers_secret_id=headers_secret_id, owner=owner)
    if names is not None:
        by_name = {t["name"]: t for t in listed}
        missing = [name for name in names if name not in by_name]
        if missing:
            raise ServiceValidationError(
                f"The server lists no tool {missing[0]!r}.", field=f"names[{names.index(missing[0])}]"
            )
        listed = [by_name[name] for name in dict.fromkeys(names)]
    config_base: dict[str, Any] = {"url": url}
    if headers_secret_id:
        config_base["headers_secret_id"] = str(headers_secret_id)
    created: list[Tool] = []
    with transaction.atomic():
        taken = owner_tool_names(owner)
        for index, server_tool in enumerate(listed):
            schema = server_tool["inputSchema"] if isinstance(server_tool["inputSchema"], dict) else {}
            try:
                tool = tool_create(
                    owner=owner,
                    name=unique_name(sanitize_name(server_tool["name"]) or "tool", taken),
                    type="mcp",
                    description=server_tool["description"],
                    category=category,
                    parameters_schema=schema or dict(EMPTY_SCHEMA),
                    config={**config_base, "tool_name": server_tool["name"]},
                )
            except ServiceValidationError as exc:
                field, messages = next(iter(exc.detail.items()))
                raise ServiceValidationError(
                    f"The server's tool {server_tool['name']!r} cannot be imported: {messages[0]}",
                    field=f"tools[{index}].{field}",
                ) from exc
            created.append(tool)
    return created
