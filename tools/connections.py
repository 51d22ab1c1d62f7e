"""API connections as HTTP tools see them: a hook the integration app fills.

An `http` tool whose config names a `connection` takes its base URL, auth, default headers and
timeout from it. `tools` never imports the app that stores connections (the dependency points the
other way): that app registers a resolver here in its AppConfig.ready().
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class ConnectionUnavailable(LookupError):
    """No connection with this id that the owner may use (or none can be resolved now)."""


@dataclass
class ResolvedConnection:
    """What one request needs from a connection; headers/params carry the credentials."""

    base_url: str
    headers: dict[str, str] = field(default_factory=dict)  # defaults: the tool's own headers win
    auth_headers: dict[str, str] = field(default_factory=dict)  # win over everything
    params: dict[str, str] = field(default_factory=dict)  # auth query parameters
    timeout: float | None = None  # read timeout, seconds
    connect_timeout: float | None = None
    # Called once after a 401: a fresh ResolvedConnection (e.g. a new OAuth2 token), or None.
    refresh: Callable[[], ResolvedConnection | None] | None = None


class ConnectionResolver(Protocol):
    def check(self, connection_id: Any, *, owner) -> str:
        """The connection's base URL if `owner` may use it; raise ConnectionUnavailable. No network."""

    def resolve(self, connection_id: Any, *, owner) -> ResolvedConnection:
        """Everything a request needs (may fetch a token); raise ConnectionUnavailable."""


_resolver: ConnectionResolver | None = None


def register_connection_resolver(resolver: ConnectionResolver) -> None:
    global _resolver
    _resolver = resolver


def _current() -> ConnectionResolver:
    if _resolver is None:
        raise ConnectionUnavailable("API connections are not available in this installation.")
    return _resolver


def check_connection(connection_id: Any, *, owner) -> str:
    return _current().check(connection_id, owner=owner)


def resolve_connection(connection_id: Any, *, owner) -> ResolvedConnection:
    return _current().resolve(connection_id, owner=owner)
