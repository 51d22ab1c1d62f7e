"""Runtime configuration: settings that change without a restart.

The registry below names each key (the environment variable that sets its default), its type,
range and purpose; the code that the key controls reads it with
`agentmesh.core.features.runtime_setting(key)`. Values an operator sets are stored with
django-constance's database backend (one `constance_constance` row per key, JSON-encoded); a
key without a row is its default — the Django setting of the same name, read live. Each
process keeps the stored values it read for at most RUNTIME_CONFIG_CACHE_SECONDS; a write
drops this process's copy at once, and `system.signals.runtime_config_reload` (sent by
POST /system/restart/config in every process) does the same.
"""

import re
import threading
import time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction

from agentmesh.core.audit import audited
from agentmesh.core.exceptions import ServiceValidationError
from agentmesh.core.features import SETTINGS, RuntimeSetting, install_backends, register_setting

RATE = "rate"
_RATE_PATTERN = re.compile(r"^[1-9][0-9]{0,8}/(s|sec|second|m|min|minute|h|hour|d|day)$")
MAX_DAYS = 3650


def _throttle_default(scope: str):
    return lambda: settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}).get(scope) or "1000/minute"


def _retention_default(table: str):
    return lambda: settings.OBSERVABILITY_RETENTION_DAYS[table]


def _setting(name: str, fallback: Any = None):
    return lambda: getattr(settings, name, fallback)


def _define() -> None:
    S = RuntimeSetting  # noqa: N806
    for item in [
        S(
            "MAINTENANCE_MODE",
            bool,
            lambda: False,
            "Every write (POST/PUT/PATCH/DELETE) under /api/ answers 503 (code maintenance_mode) while "
            "reads keep working; login, token refresh, /system/* and health stay open.",
            "maintenance",
        ),
        S(
            "MAINTENANCE_MESSAGE",
            str,
            lambda: "",
            "Shown in the 503 answers of maintenance mode.",
            "maintenance",
            max_length=500,
        ),
        S(
            "MAINTENANCE_RETRY_AFTER_SECONDS",
            int,
            _setting("MAINTENANCE_RETRY_AFTER_SECONDS", 300),
            "The Retry-After header of maintenance mode's 503 answers.",
            "maintenance",
            min=1,
            max=86400,
        ),
        S(
            "REGISTRATION_OPEN",
            bool,
            _setting("REGISTRATION_OPEN", True),
            "Whether POST /auth/register creates accounts (closed: 404).",
            "accounts",
        ),
        S(
            "AUTH_THROTTLE_RATE",
            RATE,
            _throttle_default("auth"),
            "Login, registration and token refresh requests per client address (n/second|minute|hour|day).",
            "throttles",
        ),
        S(
            "USER_THROTTLE_RATE",
            RATE,
            _throttle_default("user"),
            "API requests per user (anonymous: per client address).",
            "throttles",
        ),
        S(
            "TRIGGER_THROTTLE_RATE",
            RATE,
            _setting("TRIGGER_THROTTLE_RATE", "60/minute"),
            "Inbound trigger calls (POST /integration/hooks/{token}) per client address.",
            "throttles",
        ),
        S(
            "AGENTS_DEFAULT_MAX_TURNS",
            int,
            _setting("AGENTS_DEFAULT_MAX_TURNS"),
            "Model calls per agent run when the agent's constraints set no max_turns.",
            "agents",
            min=1,
            max=1000,
        ),
        S(
            "AGENTS_DEFAULT_TIMEOUT_SECONDS",
            int,
            _setting("AGENTS_DEFAULT_TIMEOUT_SECONDS"),
            "Wall time of an agent run when its constraints set no timeout_seconds.",
            "agents",
            min=1,
            max=86400,
        ),
        S(
            "AGENTS_DEFAULT_MAX_TOOL_CALLS",
            int,
            _setting("AGENTS_DEFAULT_MAX_TOOL_CALLS", 0),
            "Tool calls per agent run when its constraints set no max_tool_calls (0: no limit).",
            "agents",
            min=0,
            max=100000,
        ),
        S(
            "AGENTS_DEFAULT_MAX_OUTPUT_TOKENS",
            int,
            _setting("AGENTS_DEFAULT_MAX_OUTPUT_TOKENS", 0),
            "Output tokens per agent run when its constraints set no max_output_tokens (0: no limit).",
            "agents",
            min=0,
            max=100_000_000,
        ),
        S(
            "AGENTS_DEFAULT_MAX_COST_USD_PER_RUN",
            float,
            _setting("AGENTS_DEFAULT_MAX_COST_USD_PER_RUN", 0.0),
            "Cost (USD) per agent run when its constraints set no max_cost_usd_per_run (0: no limit).",
            "agents",
            min=0,
            max=100000,
        ),
        S(
            "WORKFLOWS_MAX_RUNNING",
            int,
            _setting("WORKFLOWS_MAX_RUNNING"),
            "Running workflow executions, all workflows together; more wait queued (0: all wait).",
            "workflows",
            min=0,
            max=1_000_000,
        ),
        S(
            "WORKFLOWS_MAX_RUNNING_PER_WORKFLOW",
            int,
            _setting("WORKFLOWS_MAX_RUNNING_PER_WORKFLOW"),
            "Running executions of one workflow; more wait queued (0: all wait).",
            "workflows",
            min=0,
            max=1_000_000,
        ),
        *[
            S(
                f"OBSERVABILITY_RETENTION_{env}_DAYS",
                int,
                _retention_default(table),
                f"Days {label} are kept before the hourly prune deletes them.",
                "retention",
                min=1,
                max=MAX_DAYS,
            )
            for env, table, label in [
                ("EVENTS", "events", "events (the audit trail)"),
                ("SPANS", "spans", "trace spans"),
                ("LOGS", "logs", "log records"),
                ("REQUESTS", "request_samples", "request samples"),
                ("ALERTS", "alerts", "resolved alerts"),
            ]
        ],
    ]:
        register_setting(item)


_define()


# --- the per-process copy -------------------------------------------------------------------
class _StoredValues:
    """The stored rows of the registry's keys, read at most every RUNTIME_CONFIG_CACHE_SECONDS."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    def _backend(self):
        from constance import config

        return config._backend

    def get(self) -> dict[str, Any]:
        loaded_at = self._loaded_at
        if loaded_at is None or time.monotonic() - loaded_at >= settings.RUNTIME_CONFIG_CACHE_SECONDS:
            values = dict(self._backend().mget(list(SETTINGS)))
            with self._lock:
                self._values, self._loaded_at = values, time.monotonic()
            return values
        return self._values

    def clear(self, **_signal_kwargs) -> None:
        """Forget the copy: the next read goes to the database."""
        with self._lock:
            self._loaded_at = None

    def reset_empty(self) -> None:
        """Tests: a fresh database holds no stored value."""
        with self._lock:
            self._values, self._loaded_at = {}, time.monotonic()


STORED = _StoredValues()


def _read(key: str) -> tuple[bool, Any]:
    values = STORED.get()
    if key in values:
        return True, values[key]
    return False, None


def runtime_config_cache_clear(**_signal_kwargs) -> None:
    """Drop this process's copy of the runtime configuration (receiver of runtime_config_reload)."""
    STORED.clear()


install_backends(setting_reader=_read)


# --- validation -------------------------------------------------------------------------------
def type_name(setting: RuntimeSetting) -> str:
    return setting.type if isinstance(setting.type, str) else setting.type.__name__


def config_validate_value(*, key: str, value: Any) -> Any:
    """The value coerced to the key's type, or ServiceValidationError naming the key."""
    field = f"values.{key}"
    setting = SETTINGS.get(key)
    if setting is None:
        raise ServiceValidationError(f"Unknown setting; one of: {', '.join(sorted(SETTINGS))}.", field=field)
    kind = setting.type
    wrong = ServiceValidationError(f"Expected a {type_name(setting)}.", field=field, code="invalid_type")
    if kind is bool:
        if not isinstance(value, bool):
            raise wrong
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise wrong
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise wrong
    elif kind is str or kind == RATE:
        if not isinstance(value, str):
            raise wrong
        value = value.strip() if kind == RATE else value
        if kind == RATE and not _RATE_PATTERN.match(value):
            raise ServiceValidationError(
                "Expected a rate like 100/minute (n/second, n/minute, n/hour or n/day).", field=field
            )
        if "\x00" in value:
            raise ServiceValidationError("The NUL character is not allowed.", field=field)
        if setting.max_length is not None and len(value) > setting.max_length:
            raise ServiceValidationError(f"At most {setting.max_length} characters.", field=field)
    if (setting.min is not None and value < setting.min) or (setting.max is not None and value > setting.max):
        raise ServiceValidationError(
            f"Out of range: allowed {setting.min:g} to {setting.max:g}.", field=field, code="out_of_range"
        )
    if setting.choices and value not in setting.choices:
        raise ServiceValidationError(f"One of: {', '.join(map(str, setting.choices))}.", field=field)
    return value


def constance_config() -> dict:
    """CONSTANCE_CONFIG for constance's admin form: (default, help text) per key."""
    out = {}
    for key, setting in SETTINGS.items():
        default = setting.default()
        if setting.type is float:
            default = float(default)
        elif setting.type is int:
            default = int(default)
        help_text = setting.description
        if setting.min is not None:
            help_text += f" Allowed: {setting.min:g} to {setting.max:g}."
        out[key] = (default, help_text)
    return out


# --- writes ---------------------------------------------------------------------------------
@transaction.atomic
def config_update(*, values: dict[str, Any], actor=None) -> list[dict]:
    """Set (or, with None, reset to the default) the given keys; all or nothing.

    Every key is validated first (ServiceValidationError naming `values.<key>`); one audit event
    `config_update` records the old and new values. Takes effect in this process at once and in
    every other within RUNTIME_CONFIG_CACHE_SECONDS."""
    from constance.models import Constance

    if not isinstance(values, dict) or not values:
        raise ServiceValidationError("Give at least one setting.", field="values")
    cleaned = {
        key: (None if value is None else config_validate_value(key=key, value=value))
        for key, value in values.items()
    }
    STORED.clear()
    before = STORED.get()
    backend = STORED._backend()
    changes: dict[str, list] = {}
    for key, value in cleaned.items():
        old = before.get(key, SETTINGS[key].default())
        if value is None:
            Constance.objects.filter(key=backend.add_prefix(key)).delete()
            new = SETTINGS[key].default()
        else:
            backend.set(key, value)
            new = value
        if old != new or (value is None) != (key not in before):
            changes[key] = [old, new]
    if changes:
        audited(
            "config_update",
            Constance,
            actor=actor,
            changes=changes,
            details={"keys": sorted(changes), "reset": sorted(k for k, v in cleaned.items() if v is None)},
        )
    STORED.clear()
    transaction.on_commit(STORED.clear)
    from ..selectors.config import config_values

    return config_values()
