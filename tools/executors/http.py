"""`http`: one request to an HTTP API through the safe client, arguments mapped to the URL
path, query, headers or JSON body, auth from a secret, the response mapped by JSONPath."""

from __future__ import annotations

import base64
import re
import string
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from django.conf import settings

from agentmesh.core import safe_http

from .. import connections
from ..jsonpath import NOTHING, JSONPathInvalid, compile_path, find
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

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
IDEMPOTENT_METHODS = {"GET", "HEAD", "PUT", "DELETE"}
SAFE_METHODS = {"GET", "HEAD"}  # reads: no Idempotency-Key
LOCATIONS = ["path", "query", "header", "body", "body_root"]
RETRYABLE_STATUSES = {408, 425, 429, 500, 502, 503, 504}
# Credentials belong in a secret (auth), never in a tool's plain config.
CREDENTIAL_HEADER = re.compile(
    r"^(authorization|proxy-authorization|cookie|x-api-key|api-key|x-auth-token)$", re.I
)

CONFIG_SCHEMA = {
    "type": "object",
    "required": ["url"],
    "additionalProperties": False,
    "properties": {
        "method": {"enum": METHODS, "default": "GET"},
        "url": {
            "type": "string",
            "minLength": 1,
            "maxLength": 2000,
            "description": "http(s) URL; {name} placeholders in the path are filled from arguments. "
            "With a connection: a path (/...) under the connection's base URL.",
        },
        "connection": {
            "type": "string",
            "description": "API connection id: its base URL, auth, default headers and timeout apply.",
        },
        "headers": {
            "type": "object",
            "maxProperties": 50,
            "additionalProperties": {"type": "string", "maxLength": 2000},
            "description": "Static headers (no credentials: use auth).",
        },
        "arguments_in": {
            "type": "object",
            "description": "Where each argument goes: a location, or {in, name} to rename it. "
            "Default: path placeholders, then query for GET/HEAD/DELETE and JSON body otherwise.",
            "additionalProperties": {
                "oneOf": [
                    {"enum": LOCATIONS},
                    {
                        "type": "object",
                        "required": ["in"],
                        "additionalProperties": False,
                        "properties": {"in": {"enum": LOCATIONS}, "name": {"type": "string", "minLength": 1}},
                    },
                ]
            },
        },
        "auth": {
            "type": "object",
            "required": ["type"],
            "additionalProperties": False,
            "properties": {
                "type": {"enum": ["none", "bearer", "header", "basic", "query"]},
                "secret_id": {"type": "string", "description": "Secret holding the token / password."},
                "name": {
                    "type": "string",
                    "description": "Header (type header) or query parameter (type query).",
                },
                "username": {"type": "string", "description": "User name for basic auth."},
            },
        },
        "response": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "path": {"type": "string", "description": "JSONPath into the JSON body, e.g. $.data.items"},
                "format": {"enum": ["auto", "json", "text"], "default": "auto"},
            },
        },
    },
}


def _placeholders(url: str) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(url) if name]
    except ValueError as exc:
        raise ConfigInvalid(f"Invalid URL template: {exc}", field="url") from None


def _location(config: dict, argument: str, method: str, in_path: set[str]) -> tuple[str, str]:
    spec = (config.get("arguments_in") or {}).get(argument)
    if isinstance(spec, dict):
        return spec["in"], spec.get("name") or argument
    if isinstance(spec, str):
        return spec, argument
    if argument in in_path:
        return "path", argument
    return ("query" if method in ("GET", "HEAD", "DELETE") else "body"), argument


class HttpExecutor(Executor):
    type = "http"
    label = "HTTP request"
    description = (
        "Calls an HTTP API. Arguments fill {placeholders} in the URL path and go to the query "
        "string, headers or JSON body; auth comes from a secret; JSONPath picks the result."
    )
    config_schema = CONFIG_SCHEMA

    def is_idempotent(self, tool: Tool) -> bool:
        return tool.config.get("method", "GET") in IDEMPOTENT_METHODS

    def check_config(self, config: dict, *, owner) -> None:
        url = config["url"]
        names = _placeholders(url)
        if config.get("connection"):
            url = self._check_connection(config, owner=owner)
        head, sep, _ = url.partition("://")
        authority = url[len(head) + len(sep) :].split("/", 1)[0]
        if "{" in head or "{" in authority:
            raise ConfigInvalid("Placeholders may only appear in the path and query.", field="url")
        try:
            safe_http.check_url(url.format(**dict.fromkeys(names, "x")), resolve=False)
        except safe_http.UnsafeURLError as exc:
            raise ConfigInvalid(str(exc), field="url") from None
        for header in config.get("headers") or {}:
            if CREDENTIAL_HEADER.match(header):
                raise ConfigInvalid(
                    f"Put credentials in a secret and use auth instead of the {header} header.",
                    field=f"headers.{header}",
                )
        auth = config.get("auth") or {"type": "none"}
        if auth["type"] != "none":
            if not auth.get("secret_id"):
                raise ConfigInvalid("This auth type needs a secret_id.", field="auth.secret_id")
            check_secret_reference(auth["secret_id"], owner=owner, field="auth.secret_id")
            if auth["type"] in ("header", "query") and not auth.get("name"):
                raise ConfigInvalid("Name the header or query parameter.", field="auth.name")
            if auth["type"] == "basic" and not auth.get("username"):
                raise ConfigInvalid("Basic auth needs a username.", field="auth.username")
        path = (config.get("response") or {}).get("path")
        if path:
            try:
                compile_path(path)
            except JSONPathInvalid as exc:
                raise ConfigInvalid(str(exc), field="response.path") from None

    @staticmethod
    def _check_connection(config: dict, *, owner) -> str:
        """The full URL template (connection base + path); the owner may use the connection."""
        if not config["url"].startswith("/"):
            raise ConfigInvalid("With a connection, the url is a path starting with /.", field="url")
        if config.get("auth"):
            raise ConfigInvalid("A tool with a connection takes its auth from the connection.", field="auth")
        try:
            base_url = connections.check_connection(config["connection"], owner=owner)
        except connections.ConnectionUnavailable as exc:
            raise ConfigInvalid(str(exc), field="connection") from None
        return base_url.rstrip("/") + config["url"]

    def default_parameters_schema(self, config: dict) -> dict | None:
        names = _placeholders(config.get("url", ""))
        return {
            "type": "object",
            "properties": {name: {"type": "string"} for name in names},
            "required": names,
        }

    # --- running --------------------------------------------------------------------------
    @staticmethod
    def _resolve(call: ToolCall) -> connections.ResolvedConnection | None:
        connection_id = call.tool.config.get("connection")
        if not connection_id:
            return None
        try:
            return connections.resolve_connection(connection_id, owner=call.tool.owner)
        except connections.ConnectionUnavailable as exc:
            raise ToolError(str(exc), kind=ErrorKind.CONFIG) from None

    def build_request(
        self, call: ToolCall, connection: connections.ResolvedConnection | None = None
    ) -> dict[str, Any]:
        config = call.tool.config
        method = config.get("method", "GET")
        url = config["url"]
        in_path = set(_placeholders(url))
        path_values: dict[str, str] = {}
        params: dict[str, Any] = {}
        headers: dict[str, str] = dict(connection.headers if connection else {})
        headers.update(config.get("headers") or {})
        body: dict[str, Any] = {}
        body_root: Any = NOTHING
        for argument, value in call.arguments.items():
            where, name = _location(config, argument, method, in_path)
            if where == "path":
                path_values[name] = quote(str(value), safe="")
            elif where == "query":
                params[name] = value if not isinstance(value, bool) else str(value).lower()
            elif where == "header":
                headers[name] = str(value)
            elif where == "body_root":
                body_root = value
            else:
                body[name] = value
        missing = in_path - set(path_values)
        if missing:
            raise ToolError(f"No value for the URL placeholder {sorted(missing)[0]}.", kind=ErrorKind.CONFIG)
        if call.idempotency_key and method not in SAFE_METHODS:
            headers.setdefault("Idempotency-Key", call.idempotency_key)
        request: dict[str, Any] = {"method": method, "url": url.format(**path_values), "headers": headers}
        if connection is not None:
            request["url"] = connection.base_url.rstrip("/") + request["url"]
            headers.update(connection.auth_headers)
            params.update(connection.params)
        auth = config.get("auth") or {"type": "none"}
        if auth["type"] != "none":
            secret = call.reveal_secret(auth["secret_id"])
            if auth["type"] == "bearer":
                headers["Authorization"] = f"Bearer {secret}"
            elif auth["type"] == "header":
                headers[auth["name"]] = secret
            elif auth["type"] == "basic":
                token = base64.b64encode(f"{auth['username']}:{secret}".encode()).decode()
                headers["Authorization"] = f"Basic {token}"
            elif auth["type"] == "query":
                params[auth["name"]] = secret
        if params:
            request["params"] = params
        if body_root is not NOTHING:
            request["json"] = body_root
        elif body:
            request["json"] = body
        return request

    def execute(self, call: ToolCall) -> ToolOutput:
        connection = self._resolve(call)
        method, url, response = self._send(call, connection)
        if response.status_code == 401 and connection is not None and connection.refresh is not None:
            try:
                fresh = connection.refresh()  # e.g. a new OAuth2 token: one more try
            except connections.ConnectionUnavailable as exc:
                raise ToolError(str(exc), kind=ErrorKind.CONFIG) from None
            if fresh is not None:
                method, url, response = self._send(call, fresh)
        metadata = {"http_status": response.status_code}
        if response.status_code >= 400:
            raise ToolError(
                f"{method} {url} answered {response.status_code}.",
                kind=ErrorKind.UPSTREAM,
                retryable=response.status_code in RETRYABLE_STATUSES,
                details={**metadata, "body": response.text[:1000]},
            )
        return ToolOutput(output=self._map_response(call.tool.config, response), metadata=metadata)

    def _send(self, call: ToolCall, connection: connections.ResolvedConnection | None):
        request = self.build_request(call, connection)
        method, url = request.pop("method"), request.pop("url")
        timeout: Any = max(0.05, call.remaining())
        if connection is not None and connection.timeout:
            read = min(timeout, connection.timeout)
            connect = min(read, connection.connect_timeout or read)
            timeout = httpx.Timeout(connect=connect, read=read, write=read, pool=connect)
        try:
            response = safe_http.safe_request(
                method, url, timeout=timeout, max_bytes=settings.TOOLS_MAX_RESPONSE_BYTES, **request
            )
        except safe_http.UnsafeURLError as exc:
            raise ToolError(f"Refused: {exc}", kind=ErrorKind.REFUSED) from None
        except safe_http.UpstreamTimeout:
            raise ToolError(f"{method} {url} timed out.", kind=ErrorKind.TIMEOUT, retryable=True) from None
        except safe_http.ResponseTooLarge as exc:
            raise ToolError(str(exc), kind=ErrorKind.RESPONSE) from None
        except safe_http.TooManyRedirects as exc:
            raise ToolError(str(exc), kind=ErrorKind.UPSTREAM) from None
        except safe_http.UpstreamError as exc:
            raise ToolError(str(exc), kind=ErrorKind.UPSTREAM, retryable=True) from None
        return method, url, response

    @staticmethod
    def _map_response(config: dict, response) -> Any:
        options = config.get("response") or {}
        fmt = options.get("format", "auto")
        is_json = fmt == "json" or (fmt == "auto" and "json" in response.headers.get("content-type", ""))
        if not response.content:
            body: Any = None
        elif is_json:
            try:
                body = response.json()
            except ValueError:
                raise ToolError("The response is not valid JSON.", kind=ErrorKind.RESPONSE) from None
        else:
            body = response.text
        path = options.get("path")
        if not path:
            return body
        value = find(path, body)
        if value is NOTHING:
            raise ToolError(f"The response has nothing at {path}.", kind=ErrorKind.RESPONSE)
        return value

    def live_checks(self, tool: Tool, *, actor) -> list[Check]:
        config = tool.config
        url = config["url"]
        if config.get("connection"):
            try:
                url = self._check_connection(config, owner=tool.owner)
            except ConfigInvalid as exc:
                return [Check("connection", False, str(exc))]
        sample = url.format(**dict.fromkeys(_placeholders(url), "x"))
        checks = []
        try:
            safe_http.check_url(sample, resolve=True)
            checks.append(Check("url_allowed", True, "The host resolves to an allowed address."))
        except safe_http.UnsafeURLError as exc:
            checks.append(Check("url_allowed", False, str(exc)))
        auth = config.get("auth") or {"type": "none"}
        if auth["type"] != "none":
            checks.append(secret_check(tool, auth["secret_id"], actor=actor))
        if checks[0].ok and config.get("method", "GET") in ("GET", "HEAD"):
            checks.append(self._probe(config.get("method", "GET"), sample, tool.timeout_seconds))
        return checks

    @staticmethod
    def _probe(method: str, url: str, timeout: float) -> Check:
        """Only read-only tools are probed: the server answers, and no redirect leaves the rules."""
        try:
            response = safe_http.safe_request(method, url, timeout=min(timeout, 10), max_bytes=64 * 1024)
        except safe_http.ResponseTooLarge:
            return Check("reachable", True, "The server answered.")
        except safe_http.UnsafeURLError as exc:
            return Check("reachable", False, f"Refused: {exc}")
        except safe_http.SafeHTTPError as exc:
            return Check("reachable", False, str(exc))
        return Check("reachable", True, f"The server answered {response.status_code}.")


registry.register(HttpExecutor())
