"""Feature flags: how a flag is decided for a user, the per-process copy, and changing flags.

The flags themselves are the ones registered in `agentmesh.core.features.FEATURES` (the
platform's features, plus `tool_type.<type>` for each tool type). A flag without a row in
`system.FeatureFlag` is on. Each process keeps the rows it read for at most
RUNTIME_CONFIG_CACHE_SECONDS (a change drops this process's copy at once;
`system.signals.runtime_config_reload` drops every process's).
"""

import hashlib
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from agentmesh.core.audit import audited
from agentmesh.core.exceptions import ServiceValidationError
from agentmesh.core.features import FEATURES, FlagDecision, install_backends
from agentmesh.core.signals import snapshot

from ..models import FeatureFlag

ON = FlagDecision(True)
DISABLED = FlagDecision(False, "disabled")
NOT_TARGETED = FlagDecision(False, "not_targeted")
ROLES = ("admin", "developer", "user")


class FlagNotFound(LookupError):
    pass


@dataclass(frozen=True)
class FlagRule:
    """What decides a flag (a stored row, read once per cache period)."""

    name: str
    everyone: bool | None
    percent: Decimal | None
    user_ids: frozenset
    group_ids: frozenset
    roles: frozenset
    superusers: bool
    staff: bool
    authenticated: bool


def rollout_bucket(name: str, user_id: Any) -> float:
    """0 <= bucket < 100, the same for a flag and a user every time (sticky rollout).

    A user is in an `n` % rollout when the bucket is below `n`: raising `n` keeps every user
    who had the flag, and each flag spreads users independently."""
    digest = hashlib.sha256(f"{name}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10000 / 100


def _group_ids(user) -> frozenset:
    cached = getattr(user, "_feature_group_ids", None)
    if cached is None:
        cached = frozenset(user.groups.values_list("pk", flat=True)) if user.pk else frozenset()
        user._feature_group_ids = cached
    return cached


def decide(rule: FlagRule | None, user) -> FlagDecision:
    """The flag's answer for `user` (None or anonymous: nobody in particular)."""
    if rule is None or rule.everyone is True:
        return ON
    if rule.everyone is False:
        return DISABLED
    if user is None or not getattr(user, "is_authenticated", False):
        return NOT_TARGETED
    if (
        (rule.authenticated)
        or (rule.superusers and getattr(user, "is_superuser", False))
        or (rule.staff and getattr(user, "is_staff", False))
        or user.pk in rule.user_ids
        or getattr(user, "role", None) in rule.roles
        or (rule.group_ids and rule.group_ids & _group_ids(user))
    ):
        return ON
    if rule.percent is not None and rollout_bucket(rule.name, user.pk) < float(rule.percent):
        return ON
    return NOT_TARGETED


def _rule_of(flag: FeatureFlag, user_ids, group_ids) -> FlagRule:
    return FlagRule(
        name=flag.name,
        everyone=flag.everyone,
        percent=flag.percent,
        user_ids=frozenset(user_ids),
        group_ids=frozenset(group_ids),
        roles=frozenset(flag.roles or []),
        superusers=flag.superusers,
        staff=flag.staff,
        authenticated=flag.authenticated,
    )


def decide_row(flag: FeatureFlag, user) -> FlagDecision:
    """Decide an unsaved or saved row directly (waffle's own `is_active` goes through here)."""
    users = flag.users.values_list("pk", flat=True) if flag.pk else []
    groups = flag.groups.values_list("pk", flat=True) if flag.pk else []
    return decide(_rule_of(flag, users, groups), user)


# --- the per-process copy -------------------------------------------------------------------
class _Rules:
    def __init__(self) -> None:
        self._rules: dict[str, FlagRule] = {}
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    def get(self) -> dict[str, FlagRule]:
        loaded_at = self._loaded_at
        if loaded_at is None or time.monotonic() - loaded_at >= settings.RUNTIME_CONFIG_CACHE_SECONDS:
            rules = _load_rules()
            with self._lock:
                self._rules, self._loaded_at = rules, time.monotonic()
            return rules
        return self._rules

    def clear(self, **_signal_kwargs) -> None:
        with self._lock:
            self._loaded_at = None

    def reset_empty(self) -> None:
        with self._lock:
            self._rules, self._loaded_at = {}, time.monotonic()


def _load_rules() -> dict[str, FlagRule]:
    flags = list(FeatureFlag.objects.all())
    if not flags:
        return {}
    users: dict[int, list] = {}
    for flag_id, user_id in FeatureFlag.users.through.objects.values_list("featureflag_id", "user_id"):
        users.setdefault(flag_id, []).append(user_id)
    groups: dict[int, list] = {}
    for flag_id, group_id in FeatureFlag.groups.through.objects.values_list("featureflag_id", "group_id"):
        groups.setdefault(flag_id, []).append(group_id)
    return {f.name: _rule_of(f, users.get(f.pk, ()), groups.get(f.pk, ())) for f in flags}


RULES = _Rules()


def flags_cache_clear(**_signal_kwargs) -> None:
    """Drop this process's copy of the flags (receiver of runtime_config_reload)."""
    RULES.clear()


def _read(name: str, user) -> FlagDecision:
    return decide(RULES.get().get(name), user)


install_backends(flag_reader=_read)


# --- writes ---------------------------------------------------------------------------------
TARGETING_FIELDS = frozenset({"percent", "roles", "staff", "authenticated"})
FLAG_FIELDS = (
    "everyone",
    "percent",
    "users",
    "groups",
    "roles",
    "superusers",
    "staff",
    "authenticated",
    "note",
)


def _check(name: str, changes: dict) -> tuple[list | None, list | None]:
    unknown = set(changes) - set(FLAG_FIELDS)
    if unknown:
        raise ServiceValidationError("Unknown field.", field=sorted(unknown)[0])
    percent = changes.get("percent")
    if percent is not None:
        try:
            value = Decimal(str(percent))
        except ArithmeticError as exc:
            raise ServiceValidationError("Expected a number.", field="percent") from exc
        if not Decimal(0) <= value <= Decimal(100):
            raise ServiceValidationError(
                "Out of range: allowed 0 to 100.", field="percent", code="out_of_range"
            )
        changes["percent"] = value.quantize(Decimal("0.1"))
    for role in changes.get("roles") or []:
        if role not in ROLES:
            raise ServiceValidationError(f"Unknown role {role!r}; one of: {', '.join(ROLES)}.", field="roles")
    users = groups = None
    if "users" in changes:
        ids = list(dict.fromkeys(changes.pop("users") or []))
        users = list(get_user_model().objects.filter(pk__in=ids))
        missing = set(ids) - {u.pk for u in users}
        if missing:
            raise ServiceValidationError(f"No such user: {sorted(missing)[0]}.", field="users")
    if "groups" in changes:
        names = list(dict.fromkeys(changes.pop("groups") or []))
        groups = list(Group.objects.filter(name__in=names))
        missing = set(names) - {g.name for g in groups}
        if missing:
            raise ServiceValidationError(f"No such group: {sorted(missing)[0]}.", field="groups")
    if "roles" in changes:
        changes["roles"] = sorted(set(changes["roles"] or []))
    if "note" in changes and changes["note"] is None:
        changes["note"] = ""
    return users, groups


@transaction.atomic
def flag_set(*, name: str, actor=None, **changes: Any) -> dict:
    """Change the flag `name` (only the fields given); creates its row on first change.

    ServiceValidationError names the field; FlagNotFound for a name that is not a feature.
    Audited (`create` or `update` of the flag, with user/group/role changes). Takes effect in
    this process at once and in every other within RUNTIME_CONFIG_CACHE_SECONDS."""
    from django.utils import timezone

    if name not in FEATURES:
        raise FlagNotFound(name)
    users, groups = _check(name, changes)
    flag = FeatureFlag.objects.select_for_update().filter(name=name).first()
    created = flag is None
    if created:
        # A first change that sets rules without `everyone` means "decide by the rules".
        targeted = "everyone" not in changes and bool(set(changes) & TARGETING_FIELDS or users or groups)
        flag = FeatureFlag(
            name=name, everyone=None if targeted else True, note=FEATURES[name].description[:500]
        )
    before = None if created else snapshot(flag)
    old_users = [] if created else sorted(flag.users.values_list("pk", flat=True))
    old_groups = [] if created else sorted(flag.groups.values_list("name", flat=True))
    for field, value in changes.items():
        setattr(flag, field, value)
    flag.modified = timezone.now()
    flag.save()
    extra: dict = {}
    if users is not None:
        flag.users.set(users)
        new = sorted(u.pk for u in users)
        if new != old_users:
            extra["users"] = new
    if groups is not None:
        flag.groups.set(groups)
        new = sorted(g.name for g in groups)
        if new != old_groups:
            extra["groups"] = new
    if created:
        audited("create", flag, actor=actor, changes=extra)
    else:
        audited("update", flag, before=before, actor=actor, changes=extra)
    RULES.clear()
    transaction.on_commit(RULES.clear)
    from ..selectors.config import flag_get

    return flag_get(name)


@transaction.atomic
def flag_reset(*, name: str, actor=None) -> dict:
    """Delete the flag's row: the feature is on for everyone again (audited `delete`)."""
    if name not in FEATURES:
        raise FlagNotFound(name)
    flag = FeatureFlag.objects.filter(name=name).first()
    if flag is not None:
        before = snapshot(flag)
        flag.delete()
        audited("delete", flag, before=before, actor=actor)
    RULES.clear()
    transaction.on_commit(RULES.clear)
    from ..selectors.config import flag_get

    return flag_get(name)
