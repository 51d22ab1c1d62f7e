"""The executor interface: one class per tool type, registered in `tools.executors.registry`.

An executor knows its type's config schema, checks a config beyond the schema (URLs, secret
references), runs one call, and offers live checks for `POST /tools/{id}/validate`. It does
not touch ToolExecution rows, spans or retries: `tools.services` does that around it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tools.models import Tool


class ErrorKind:
    """Why an execution failed (the `error_kind` of a ToolExecution, grouped in stats)."""

    INVALID_ARGUMENTS = "invalid_arguments"
    CONFIG = "config"  # the tool's config cannot run (missing secret, bad template…)
    REFUSED = "refused"  # the SSRF guard refused the address
    TIMEOUT = "timeout"
    UPSTREAM = "upstream"  # the remote answered with an error status or broke the protocol
    RESPONSE = "response"  # the response could not be mapped or is too large
    TOOL_ERROR = "tool_error"  # the tool itself reported an error (MCP isError, builtin raised)
    INTERNAL = "internal"


class ToolError(Exception):
    """A failed call. `retryable` tells the service a retry may succeed (timeouts, 429, 5xx)."""

    def __init__(
        self, message: str, *, kind: str = ErrorKind.TOOL_ERROR, retryable: bool = False, details=None
    ):
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable
        self.details = details or {}


class ConfigInvalid(ValueError):
    """A config that passed its JSON Schema but is still unusable; `field` is a dotted path
    under `config` (e.g. "url" or "auth.secret_id")."""

    def __init__(self, message: str, *, field: str = ""):
        super().__init__(message)
        self.field = field


@dataclass
class ToolCall:
    """One call of a tool, as an executor sees it."""

    tool: Tool
    arguments: dict[str, Any]
    timeout: float  # seconds this call may take in total
    actor: Any = None  # the user on whose behalf the call runs (None for system work)
    # Returns the plaintext of a secret referenced by the tool's config (records the use).
    reveal_secret: Callable[[str], str] = field(default=lambda secret_id: "")
    # The same for every retry of one logical call (e.g. a workflow step attempt): an HTTP
    # tool sends it as `Idempotency-Key` so the server can apply a repeated write once.
    idempotency_key: str = ""
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        return max(0.0, self.timeout - (time.monotonic() - self.started))


@dataclass
class ToolOutput:
    output: Any  # JSON-serialisable result returned to the caller
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. {"http_status": 200}


@dataclass
class Check:
    """One line of a validation report."""

    name: str
    ok: bool
    message: str = ""


class Executor:
    type: str = ""
    label: str = ""
    description: str = ""
    config_schema: dict = {"type": "object"}

    #: calls that change nothing remotely may be retried without the tool opting in
    def is_idempotent(self, tool: Tool) -> bool:
        return False

    def check_config(self, config: dict, *, owner) -> None:
        """Checks beyond the JSON Schema on save; raise ConfigInvalid. No network here."""

    def default_parameters_schema(self, config: dict) -> dict | None:
        """A parameters schema to use when the tool declares none (builtins declare theirs)."""
        return None

    def default_output_schema(self, config: dict) -> dict | None:
        """An output schema to use when the tool declares none."""
        return None

    def execute(self, call: ToolCall) -> ToolOutput:
        raise NotImplementedError

    def live_checks(self, tool: Tool, *, actor) -> list[Check]:
        """Checks that may use the network (reachability, listing); run by validate."""
        return []


def check_secret_reference(secret_id: Any, *, owner, field: str) -> None:
    """The owner may reference this secret (owns it, is admin, or it is shared for use)."""
    from agentmesh.core.permissions import has_object_action
    from masterdata.models import Secret

    secret = Secret.objects.filter(pk=secret_id).first() if is_uuid(secret_id) else None
    if secret is None or not has_object_action(owner, secret, "use"):
        raise ConfigInvalid("No secret with this id that you may use.", field=field)


def is_uuid(value: Any) -> bool:
    import uuid

    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def secret_check(tool: Tool, secret_id: str, *, actor) -> Check:
    """The owner may still use the referenced secret and it decrypts."""
    from agentmesh.core import crypto
    from agentmesh.core.permissions import has_object_action
    from masterdata.models import Secret

    secret = Secret.objects.filter(pk=secret_id).first()
    if secret is None or not has_object_action(tool.owner, secret, "use"):
        return Check(
            "secret_usable", False, "The referenced secret is gone or no longer shared with the owner."
        )
    try:
        crypto.decrypt(secret.encrypted_value)
    except crypto.DecryptionError:
        return Check("secret_usable", False, "The secret does not decrypt with the configured keys.")
    return Check("secret_usable", True)
