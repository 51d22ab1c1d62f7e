"""API connections (create, update, delete, check), the OAuth2 client-credentials token cache,
the resolver HTTP tools use, and external-tool import (OpenAPI, MCP, one HTTP tool)."""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Any

import httpx
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from agentmesh.core import crypto, safe_http
from agentmesh.core.audit import audited
from agentmesh.core.exceptions import ServiceValidationError
from agentmesh.core.permissions import has_object_action
from agentmesh.core.services import object_delete
from agentmesh.core.signals import snapshot
from masterdata.models import Secret
from masterdata.services import ensure_unique_per_owner, secret_reveal
from observability.services import event_record
from tools.connections import ConnectionUnavailable, ResolvedConnection
from tools.executors.base import is_uuid
from tools.executors.http import CREDENTIAL_HEADER

from ..models import ApiConnection, AuthType

logger = logging.getLogger(__name__)

__all__ = [
    "API_CONNECTION_FIELDS",
    "ConnectionResolver",
    "api_connection_check",
    "api_connection_create",
    "api_connection_delete",
    "api_connection_request",
    "api_connection_update",
    "external_tool_import",
    "oauth2_token",
]

API_CONNECTION_FIELDS = {
    "name",
    "description",
    "base_url",
    "auth_type",
    "secret",
    "key_name",
    "username",
    "token_url",
    "client_id",
    "scopes",
    "audience",
    "default_headers",
    "connect_timeout",
    "read_timeout",
    "health_path",
}
TOKEN_MARGIN_SECONDS = 30  # a cached token is dropped this long before it expires
DEFAULT_TOKEN_SECONDS = 300  # when the token endpoint names no expires_in
MAX_TOKEN_RESPONSE_BYTES = 64 * 1024
MAX_HEADERS = 50
NEEDS_SECRET = {
    AuthType.BEARER,
    AuthType.API_KEY_HEADER,
    AuthType.API_KEY_QUERY,
    AuthType.BASIC,
    AuthType.OAUTH2_CLIENT_CREDENTIALS,
}


# --- validation -------------------------------------------------------------------------------
def _check_url(value: str, field: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ServiceValidationError("An http(s) URL.", field=field, code="required")
    try:
        safe_http.check_url(value, resolve=False)
    except safe_http.UnsafeURLError as exc:
        raise ServiceValidationError(str(exc), field=field) from None


def _validate(connection: ApiConnection, *, actor, secret_changed: bool) -> None:
    connection.name = (connection.name or "").strip()
    if not connection.name:
        raise ServiceValidationError("This field may not be blank.", field="name", code="blank")
    _check_url(connection.base_url, "base_url")
    if "{" in connection.base_url or "}" in connection.base_url:
        raise ServiceValidationError("The base URL may not contain { or }.", field="base_url")
    if connection.auth_type not in AuthType.values:
        raise ServiceValidationError(f"One of: {', '.join(AuthType.values)}.", field="auth_type")
    auth = connection.auth_type
    if auth in NEEDS_SECRET and connection.secret_id is None:
        raise ServiceValidationError("This auth type needs a secret.", field="secret", code="required")
    if auth == AuthType.NONE and connection.secret_id is not None:
        raise ServiceValidationError("Auth type none takes no secret.", field="secret")
    checked = connection.secret_id is not None and secret_changed and actor is not None
    if checked and not has_object_action(actor, connection.secret, "use"):
        raise ServiceValidationError("No usable secret with this id.", field="secret")
    if auth in (AuthType.API_KEY_HEADER, AuthType.API_KEY_QUERY) and not connection.key_name:
        raise ServiceValidationError(
            "Name the header or query parameter of the key.", field="key_name", code="required"
        )
    if auth == AuthType.BASIC and not connection.username:
        raise ServiceValidationError("Basic auth needs a username.", field="username", code="required")
    if auth == AuthType.OAUTH2_CLIENT_CREDENTIALS:
        _check_url(connection.token_url, "token_url")
        if not connection.client_id:
            raise ServiceValidationError("OAuth2 needs a client id.", field="client_id", code="required")
    if not isinstance(connection.scopes, list) or not all(
        isinstance(s, str) and s and " " not in s for s in connection.scopes
    ):
        raise ServiceValidationError("A list of scope names without spaces.", field="scopes")
    headers = connection.default_headers
    if not isinstance(headers, dict) or len(headers) > MAX_HEADERS:
        raise ServiceValidationError(f"An object of at most {MAX_HEADERS} headers.", field="default_headers")
    for name, value in headers.items():
        if not isinstance(value, str) or len(value) > 2000 or "\n" in value or "\r" in value:
            raise ServiceValidationError("A string of one line.", field=f"default_headers.{name}")
        if CREDENTIAL_HEADER.match(name) or (
            auth == AuthType.API_KEY_HEADER and name.lower() == connection.key_name.lower()
        ):
            raise ServiceValidationError(
                f"Credentials belong in a secret (auth), not in the {name} header.",
                field=f"default_headers.{name}",
            )
    limit = float(settings.TOOLS_MAX_TIMEOUT_SECONDS)
    for field in ("connect_timeout", "read_timeout"):
        value = getattr(connection, field)
        if not isinstance(value, int | float) or not 0 < value <= limit:
            raise ServiceValidationError(f"More than 0 and at most {limit:g} seconds.", field=field)
    if connection.health_path and not connection.health_path.startswith("/"):
        raise ServiceValidationError("A path starting with /.", field="health_path")
    ensure_unique_per_owner(connection, "name")


def _assign(connection: ApiConnection, fields: dict[str, Any]) -> None:
    unknown = set(fields) - API_CONNECTION_FIELDS
    if unknown:
        raise TypeError(f"Unexpected API connection fields: {sorted(unknown)}")
    for name, value in fields.items():
        setattr(connection, name, value)


# --- writes -----------------------------------------------------------------------------------
@transaction.atomic
def api_connection_create(*, owner, name: str, actor=None, **fields: Any) -> ApiConnection:
    """Create a connection; `actor` (default: the owner) must be allowed to use its secret."""
    connection = ApiConnection(owner=owner, name=name)
    _assign(connection, fields)
    _validate(connection, actor=actor or owner, secret_changed=True)
    connection.save()
    audited("create", connection, actor=actor)
    return connection


@transaction.atomic
def api_connection_update(*, connection: ApiConnection, actor, **fields: Any) -> ApiConnection:
    before = snapshot(connection)
    old_secret = connection.secret_id
    _assign(connection, fields)
    _validate(connection, actor=actor, secret_changed=connection.secret_id != old_secret)
    connection.save()
    audited("update", connection, before=before, actor=actor)
    return connection


def api_connection_delete(*, connection: ApiConnection) -> None:
    """Tools that name the connection fail their calls with a config error until changed."""
    object_delete(instance=connection)


# --- credentials ------------------------------------------------------------------------------
def _reveal(connection: ApiConnection) -> str:
    secret = Secret.objects.filter(pk=connection.secret_id).first()
    if secret is None:
        raise ConnectionUnavailable("The secret of this API connection no longer exists.")
    # The reference was authorised when the connection was saved.
    return secret_reveal(secret=secret, actor=None, purpose=f"API connection {connection.pk}")


def _token_cache_key(connection: ApiConnection) -> str:
    secret_fingerprint = Secret.objects.filter(pk=connection.secret_id).values_list("fingerprint", flat=True)
    material = "|".join(
        [
            str(next(iter(secret_fingerprint), "")),
            connection.token_url,
            connection.client_id,
            " ".join(connection.scopes or []),
            connection.audience,
        ]
    )
    digest = hashlib.sha256(material.encode()).hexdigest()[:32]
    return f"integration:oauth2:{connection.pk}:{digest}"


class TokenError(Exception):
    pass


def oauth2_token(*, connection: ApiConnection, refresh: bool = False) -> str:
    """An access token for an OAuth2 client-credentials connection: from the cache, or fetched
    from the token URL through the safe client and cached until shortly before it expires."""
    key = _token_cache_key(connection)
    if not refresh:
        cached = cache.get(key)
        if cached:
            return crypto.decrypt(cached)
    data = {"grant_type": "client_credentials", "client_id": connection.client_id}
    data["client_secret"] = _reveal(connection)
    if connection.scopes:
        data["scope"] = " ".join(connection.scopes)
    if connection.audience:
        data["audience"] = connection.audience
    try:
        response = safe_http.safe_request(
            "POST",
            connection.token_url,
            data=data,
            headers={"Accept": "application/json"},
            timeout=connection.read_timeout,
            max_bytes=MAX_TOKEN_RESPONSE_BYTES,
        )
    except safe_http.SafeHTTPError as exc:
        raise TokenError(f"The token endpoint could not be reached: {exc}") from None
    if response.status_code != 200:
        raise TokenError(f"The token endpoint answered {response.status_code}.")
    try:
        body = response.json()
        token = body["access_token"]
        expires_in = int(body.get("expires_in") or DEFAULT_TOKEN_SECONDS)
    except (ValueError, KeyError, TypeError):
        raise TokenError("The token endpoint answered no access_token.") from None
    if not isinstance(token, str) or not token:
        raise TokenError("The token endpoint answered no access_token.")
    lifetime = expires_in - TOKEN_MARGIN_SECONDS
    if lifetime > 0:
        cache.set(key, crypto.encrypt(token), timeout=lifetime)
    else:
        cache.delete(key)
    return token


def _auth(connection: ApiConnection, *, refresh: bool = False) -> tuple[dict[str, str], dict[str, str]]:
    """(auth headers, auth query parameters) of a connection."""
    auth = connection.auth_type
    if auth == AuthType.NONE:
        return {}, {}
    if auth == AuthType.OAUTH2_CLIENT_CREDENTIALS:
        try:
            token = oauth2_token(connection=connection, refresh=refresh)
        except TokenError as exc:
            raise ConnectionUnavailable(str(exc)) from None
        return {"Authorization": f"Bearer {token}"}, {}
    secret = _reveal(connection)
    if auth == AuthType.BEARER:
        return {"Authorization": f"Bearer {secret}"}, {}
    if auth == AuthType.API_KEY_HEADER:
        return {connection.key_name: secret}, {}
    if auth == AuthType.API_KEY_QUERY:
        return {}, {connection.key_name: secret}
    token = base64.b64encode(f"{connection.username}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}, {}


def _resolved(connection: ApiConnection, *, refresh: bool = False) -> ResolvedConnection:
    headers, params = _auth(connection, refresh=refresh)
    resolved = ResolvedConnection(
        base_url=connection.base_url,
        headers=dict(connection.default_headers or {}),
        auth_headers=headers,
        params=params,
        timeout=connection.read_timeout,
        connect_timeout=connection.connect_timeout,
    )
    if connection.auth_type == AuthType.OAUTH2_CLIENT_CREDENTIALS and not refresh:
        resolved.refresh = lambda: _resolved(connection, refresh=True)
    return resolved


def _usable(connection_id: Any, owner) -> ApiConnection:
    connection = (
        ApiConnection.objects.select_related("owner").filter(pk=connection_id).first()
        if is_uuid(connection_id)
        else None
    )
    if connection is None or owner is None or not has_object_action(owner, connection, "use"):
        raise ConnectionUnavailable("No API connection with this id that you may use.")
    return connection


class ConnectionResolver:
    """What HTTP tools see of connections (registered in IntegrationConfig.ready())."""

    def check(self, connection_id: Any, *, owner) -> str:
        return _usable(connection_id, owner).base_url

    def resolve(self, connection_id: Any, *, owner) -> ResolvedConnection:
        return _resolved(_usable(connection_id, owner))


def api_connection_request(
    *, connection: ApiConnection, method: str, path: str, headers: dict | None = None, **kwargs: Any
):
    """One request to `base_url + path` with the connection's auth through the safe client;
    an OAuth2 connection answered 401 fetches a new token and tries once more."""

    def send(resolved: ResolvedConnection):
        return safe_http.safe_request(
            method,
            resolved.base_url.rstrip("/") + path,
            headers={**resolved.headers, **(headers or {}), **resolved.auth_headers},
            params=resolved.params or None,
            timeout=httpx.Timeout(
                connect=connection.connect_timeout,
                read=connection.read_timeout,
                write=connection.read_timeout,
                pool=connection.connect_timeout,
            ),
            **kwargs,
        )

    resolved = _resolved(connection)
    response = send(resolved)
    if response.status_code == 401 and resolved.refresh is not None:
        response = send(resolved.refresh())
    return response


def api_connection_check(*, connection: ApiConnection, actor=None) -> ApiConnection:
    """Call the health path (default: the base URL) and record the result on the connection."""
    status_code, error = None, ""
    try:
        response = api_connection_request(connection=connection, method="GET", path=connection.health_path)
        status_code = response.status_code
        if not 200 <= status_code < 400:
            error = f"The health check answered {status_code}."
    except ConnectionUnavailable as exc:
        error = str(exc)
    except safe_http.SafeHTTPError as exc:
        error = str(exc)
    ok = not error
    with transaction.atomic():
        current = ApiConnection.objects.select_for_update().get(pk=connection.pk)
        before = snapshot(current)
        current.last_check_at = timezone.now()
        current.last_check_ok = ok
        current.last_check_status = status_code
        current.last_check_error = error[:2000]
        current.save(
            update_fields=[
                "last_check_at",
                "last_check_ok",
                "last_check_status",
                "last_check_error",
                "updated_at",
            ]
        )
        audited("check", current, before=before, actor=actor)
    event_record(
        type="integration.connection.checked" if ok else "integration.connection.check_failed",
        level="info" if ok else "warning",
        source="integration",
        actor=actor,
        resource=current,
        payload={"ok": ok, "status_code": status_code},
    )
    return current


# --- external tools -----------------------------------------------------------------------------
class ExternalToolKind:
    OPENAPI = "openapi"
    MCP = "mcp"
    HTTP = "http"
    ALL = (OPENAPI, MCP, HTTP)


def _planned(tool: dict) -> dict:
    return {
        "id": None,
        "name": tool["name"],
        "type": tool["type"],
        "status": None,
        "description": tool.get("description", ""),
        "config": tool.get("config", {}),
        "parameters_schema": tool.get("parameters_schema") or {"type": "object", "properties": {}},
    }


def _deploy_all(tools: list, *, actor) -> None:
    """Validate and deploy every tool, or raise (the caller's transaction undoes everything)."""
    from tools.services import tool_deploy, tool_validate

    for index, tool in enumerate(tools):
        checks = tool_validate(tool=tool, actor=actor)
        failed = [f"{c.name}: {c.message}" for c in checks if not c.ok]
        if failed:
            raise ServiceValidationError(
                f"The tool {tool.name} did not pass its checks ({'; '.join(failed)[:500]}); nothing was created.",
                field=f"tools[{index}]",
            )
        tool_deploy(tool=tool, actor=actor)


def external_tool_import(
    *,
    owner,
    kind: str,
    url: str | None = None,
    document: Any = None,
    secret: Any = None,
    connection: Any = None,
    operations: list[str] | None = None,
    name: str = "",
    method: str = "GET",
    description: str = "",
    category: str = "",
    deploy: bool = False,
    dry_run: bool = False,
) -> dict:
    """Import tools through the tools app's importers: every operation of an OpenAPI document
    (`url` or inline `document`), every tool of an MCP server (`url`), or one HTTP tool (`url`,
    `name`). `secret` authenticates (bearer for OpenAPI/HTTP, the headers secret for MCP);
    `connection` (an API connection the owner may use) gives OpenAPI/HTTP tools base URL and auth.
    `dry_run` answers what would be created and writes nothing; `deploy` validates and deploys
    them all or creates nothing. Answers {"dry_run", "deployed", "tools": [Tool | planned dict]}.
    """
    from tools.mcp_import import mcp_server_tools, tools_import_from_mcp
    from tools.naming import owner_tool_names, sanitize_name, unique_name
    from tools.openapi_import import tools_import_openapi, tools_plan_openapi
    from tools.services import tool_create

    if kind not in ExternalToolKind.ALL:
        raise ServiceValidationError(f"One of: {', '.join(ExternalToolKind.ALL)}.", field="kind")
    if secret and connection:
        raise ServiceValidationError("Give a secret or a connection, not both.", field="secret")
    connection_id = None
    if connection:
        if kind == ExternalToolKind.MCP:
            raise ServiceValidationError("MCP tools cannot use an API connection.", field="connection")
        try:
            connection_id = str(_usable(connection, owner).pk)
        except ConnectionUnavailable as exc:
            raise ServiceValidationError(str(exc), field="connection") from None
    secret_id = str(secret) if secret else None
    if secret_id:
        usable = Secret.objects.filter(pk=secret_id).first() if is_uuid(secret_id) else None
        if usable is None or not has_object_action(owner, usable, "use"):
            raise ServiceValidationError("No usable secret with this id.", field="secret")
    bearer = {"type": "bearer", "secret_id": secret_id} if secret_id else None

    with transaction.atomic():
        if kind == ExternalToolKind.OPENAPI:
            if (url is None) == (document is None):
                raise ServiceValidationError("Give either url or document.", field="url")
            options = {
                "document": document,
                "url": url,
                "auth": bearer,
                "operations": operations,
                "category": category,
                "connection": connection_id,
            }
            if dry_run:
                plan = tools_plan_openapi(owner=owner, **options)
                return {"dry_run": True, "deployed": False, "tools": [_planned(t) for t in plan]}
            tools = tools_import_openapi(owner=owner, **options)
        elif kind == ExternalToolKind.MCP:
            if not url:
                raise ServiceValidationError("The MCP server's URL.", field="url", code="required")
            if dry_run:
                listed = mcp_server_tools(url=url, headers_secret_id=secret_id, owner=owner)
                if operations is not None:
                    known = {t["name"] for t in listed}
                    missing = [n for n in operations if n not in known]
                    if missing:
                        raise ServiceValidationError(
                            f"The server lists no tool {missing[0]!r}.",
                            field=f"operations[{operations.index(missing[0])}]",
                        )
                    listed = [t for t in listed if t["name"] in set(operations)]
                taken = owner_tool_names(owner)
                plan = [
                    {
                        "name": unique_name(sanitize_name(t["name"]) or "tool", taken),
                        "type": "mcp",
                        "description": t["description"],
                        "config": {"url": url, "tool_name": t["name"]},
                        "parameters_schema": t["inputSchema"],
                    }
                    for t in listed
                ]
                return {"dry_run": True, "deployed": False, "tools": [_planned(t) for t in plan]}
            try:
                tools = tools_import_from_mcp(
                    owner=owner, url=url, headers_secret_id=secret_id, names=operations, category=category
                )
            except ServiceValidationError as exc:
                field, messages = next(iter(exc.detail.items()))
                if not field.startswith("names"):
                    raise
                raise ServiceValidationError(
                    str(messages[0]), field=field.replace("names", "operations", 1)
                ) from exc
        else:
            if not url:
                raise ServiceValidationError(
                    "The URL (a path with a connection).", field="url", code="required"
                )
            if not name:
                raise ServiceValidationError("Name the tool.", field="name", code="required")
            config: dict[str, Any] = {"method": method, "url": url}
            if connection_id:
                config["connection"] = connection_id
            elif bearer:
                config["auth"] = bearer
            fields = {"description": description, "category": category, "config": config}
            if dry_run:
                return {
                    "dry_run": True,
                    "deployed": False,
                    "tools": [_planned({"name": name, "type": "http", **fields})],
                }
            tools = [tool_create(owner=owner, name=name, type="http", **fields)]
        if deploy:
            _deploy_all(tools, actor=owner)
            for tool in tools:
                tool.refresh_from_db()
    return {"dry_run": False, "deployed": bool(deploy), "tools": tools}
