"""Runtime settings and feature flags: the primitives every app may use.

Lower apps (observability … integration) read a live setting with `runtime_setting(key)` and
ask whether a feature is on with `flag_is_active(name, user=None)` / `require_feature(...)`.
They never import `system`: the `system` app owns the storage (django-constance rows, the
waffle-based FeatureFlag model), the API and the admin, and plugs its readers in here in its
AppConfig.ready() (`install_backends`). Without them (a script that never set Django up)
every setting is its default and every flag is on.

Flags a request was served under are collected per request/task (`track_flags()` /
`served_flags()`); the observability middleware writes them on the request's span as the
`feature_flags` attribute, so stats can be split by them (A/B).
"""

import contextvars
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rest_framework import exceptions, status


# --- Runtime settings -----------------------------------------------------------------------
@dataclass(frozen=True)
class RuntimeSetting:
    """One setting that may change without a restart.

    `default` is a callable (read at every use, so it follows the Django settings in force);
    `type` is one of bool, int, float, str, "rate" (a DRF throttle rate, "100/minute").
    """

    key: str
    type: Any
    default: Callable[[], Any]
    description: str
    section: str
    min: float | None = None
    max: float | None = None
    choices: tuple = ()
    max_length: int | None = None


SETTINGS: dict[str, RuntimeSetting] = {}


def register_setting(setting: RuntimeSetting) -> RuntimeSetting:
    SETTINGS[setting.key] = setting
    return setting


class _Backends:
    setting_reader: Callable[[str], tuple[bool, Any]] | None = None  # key -> (stored?, value)
    flag_reader: Callable[[str, Any], "FlagDecision"] | None = None


_backends = _Backends()


def install_backends(*, setting_reader=None, flag_reader=None) -> None:
    """Called by the system app: where stored settings and flags are read."""
    if setting_reader is not None:
        _backends.setting_reader = setting_reader
    if flag_reader is not None:
        _backends.flag_reader = flag_reader


def runtime_setting(key: str) -> Any:
    """The value in force: the stored one (at most RUNTIME_CONFIG_CACHE_SECONDS old), else the
    default (the Django setting of the same purpose)."""
    setting = SETTINGS[key]
    if _backends.setting_reader is not None:
        stored, value = _backends.setting_reader(key)
        if stored:
            return value
    return setting.default()


# --- Feature flags --------------------------------------------------------------------------
@dataclass(frozen=True)
class Feature:
    name: str
    description: str


FEATURES: dict[str, Feature] = {}


def register_feature(name: str, description: str) -> Feature:
    feature = FEATURES.get(name) or Feature(name=name, description=description)
    FEATURES[name] = feature
    return feature


@dataclass(frozen=True)
class FlagDecision:
    active: bool
    # why not: "disabled" (off for everyone: 503) or "not_targeted" (a rule excludes the caller: 403)
    reason: str = ""


ON = FlagDecision(True)


class FeatureDisabled(exceptions.APIException):
    """The feature is switched off for everyone (503)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "feature_disabled"

    def __init__(self, name: str):
        self.flag = name
        super().__init__(f"The feature '{name}' is disabled (feature flag '{name}').")


class FeatureNotEnabled(exceptions.APIException):
    """A targeting rule of the feature excludes the caller (403)."""

    status_code = status.HTTP_403_FORBIDDEN
    default_code = "feature_not_enabled"

    def __init__(self, name: str):
        self.flag = name
        super().__init__(f"The feature '{name}' is not enabled for you (feature flag '{name}').")


FeatureUnavailable = (FeatureDisabled, FeatureNotEnabled)

_served: contextvars.ContextVar[dict | None] = contextvars.ContextVar("agentmesh_flags", default=None)


def track_flags() -> contextvars.Token:
    """Start collecting the flags evaluated from here (a request, a task)."""
    return _served.set({})


def untrack_flags(token: contextvars.Token) -> None:
    try:
        _served.reset(token)
    except ValueError:
        _served.set(None)


def served_flags() -> dict[str, bool]:
    """{flag name: whether it was on} for the flags evaluated since track_flags()."""
    return dict(_served.get() or {})


def flag_decision(name: str, user=None) -> FlagDecision:
    if name not in FEATURES:
        raise KeyError(f"Unknown feature flag {name!r}.")
    decision = _backends.flag_reader(name, user) if _backends.flag_reader is not None else ON
    served = _served.get()
    if served is not None:
        served[name] = decision.active
    return decision


def flag_is_active(name: str, user=None) -> bool:
    """Whether the feature `name` is on for `user` (None: an anonymous caller)."""
    return flag_decision(name, user).active


def require_feature(name: str, user=None) -> None:
    """Raise FeatureDisabled (503) or FeatureNotEnabled (403) unless the feature is on."""
    decision = flag_decision(name, user)
    if decision.active:
        return
    if decision.reason == "not_targeted":
        raise FeatureNotEnabled(name)
    raise FeatureDisabled(name)


def feature_required(name: str):
    """Decorate a view method (self, request, …): refuse it unless the feature is on for the
    request's user."""

    def decorate(func):
        @functools.wraps(func)
        def wrapper(view, request, *args, **kwargs):
            user = getattr(request, "user", None)
            require_feature(name, user if getattr(user, "is_authenticated", False) else None)
            return func(view, request, *args, **kwargs)

        wrapper.feature_flag = name
        return wrapper

    return decorate


def feature_permission(name: str) -> type:
    """A DRF permission class: the view answers 503/403 unless the feature is on for the user."""
    from rest_framework.permissions import BasePermission

    class FeatureEnabled(BasePermission):
        def has_permission(self, request, view):
            user = getattr(request, "user", None)
            require_feature(name, user if getattr(user, "is_authenticated", False) else None)
            return True

    FeatureEnabled.feature_flag = name
    FeatureEnabled.__name__ = f"FeatureEnabled[{name}]"
    return FeatureEnabled


def tool_type_flag(tool_type: str) -> str:
    """The flag that switches a tool type on and off (`mcp` for MCP tools, else tool_type.<type>)."""
    return "mcp" if tool_type == "mcp" else f"tool_type.{tool_type}"


# The features of the platform; the tools registry adds tool_type.<type> for each type.
register_feature("registration", "Self-registration (POST /auth/register).")
register_feature(
    "streaming", "Server-sent event streams: agent interact with stream=true and workflow execution events."
)
register_feature(
    "background_runs",
    "Background work started from the API: agent interact with background=true, workflow execute "
    "with mode=async, tool execute with ?async=true.",
)
register_feature("mcp", "MCP: tools of type mcp (create and execute) and MCP tool discovery/import.")
register_feature("webhooks", "Outbound webhook deliveries (event dispatch, test and redeliver).")
register_feature("triggers", "Inbound workflow triggers (POST /integration/hooks/{token}).")

__all__ = [
    "FEATURES",
    "SETTINGS",
    "Feature",
    "FeatureDisabled",
    "FeatureNotEnabled",
    "FeatureUnavailable",
    "FlagDecision",
    "RuntimeSetting",
    "feature_permission",
    "feature_required",
    "flag_decision",
    "flag_is_active",
    "install_backends",
    "register_feature",
    "register_setting",
    "require_feature",
    "runtime_setting",
    "served_flags",
    "tool_type_flag",
    "track_flags",
    "untrack_flags",
]
