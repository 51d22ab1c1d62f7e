"""Sharing an owned object with users and groups (guardian object permissions)."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Model
from guardian.shortcuts import assign_perm, get_groups_with_perms, get_users_with_perms, remove_perm

from .audit import audited
from .permissions import SHAREABLE_ACTIONS, codename


@transaction.atomic
def object_share(
    *,
    obj: Model,
    users: list | None = None,
    groups: list[Group] | None = None,
    actions: list[str],
    revoke: bool = False,
) -> dict:
    """Grant (or revoke) `actions` on `obj`. Granting use/change implies view; revoking view
    revokes everything, since the other rights are unreachable without it. Audited as
    `share` / `revoke` with the users, groups and actions."""
    actions = set(actions)
    if not revoke and actions & {"use", "change"}:
        actions.add("view")
    if revoke and "view" in actions:
        actions = set(SHAREABLE_ACTIONS)
    for action in sorted(actions):
        perm = codename(type(obj), action)
        for holder in [*(users or []), *(groups or [])]:
            (remove_perm if revoke else assign_perm)(perm, holder, obj)
    audited(
        "revoke" if revoke else "share",
        obj,
        details={
            "users": [{"id": u.pk, "username": u.get_username()} for u in users or []],
            "groups": [{"id": g.pk, "name": g.name} for g in groups or []],
            "actions": sorted(actions),
        },
    )
    return object_shares(obj=obj)


def object_shares(*, obj: Model) -> dict:
    """Who the object is shared with, and with which actions."""

    def actions(perms) -> list[str]:
        return sorted(p.rsplit("_", 1)[0] for p in perms if p.rsplit("_", 1)[0] in SHAREABLE_ACTIONS)

    user_model = get_user_model()
    users = get_users_with_perms(obj, attach_perms=True, with_superusers=False, with_group_users=False)
    groups = get_groups_with_perms(obj, attach_perms=True)
    return {
        "users": [
            {"id": u.pk, "username": u.username, "actions": actions(perms)}
            for u, perms in sorted(users.items(), key=lambda item: item[0].username)
            if isinstance(u, user_model) and actions(perms)
        ],
        "groups": [
            {"id": g.pk, "name": g.name, "actions": actions(perms)}
            for g, perms in sorted(groups.items(), key=lambda item: item[0].name)
            if actions(perms)
        ],
    }
