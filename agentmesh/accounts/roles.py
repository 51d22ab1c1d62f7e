"""Roles are groups holding model permissions.

`admin` may do everything, `developer` creates and manages its own domain objects and uses
shared ones, `user` views and uses what is shared with it. The groups are created by a data
migration; their permissions on every owned domain model are (re)applied after each migrate,
because those models' permissions only exist once their app has migrated.

`User.role` is the one source of truth: the authentication backend grants the model
permissions of the role's group by role, never by membership, so no path that edits the
membership (admin form, shell, data migration) can contradict it. The membership itself is
kept in step too (shares with a role group reach its members): on save, on every change of
a user's groups, and for every user after each migrate. A queryset `update(role=...)` sends
no signal: its users keep the right permissions, their membership is fixed by the next save
or migrate.
"""

from django.apps import AppConfig, apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db.models import Q, QuerySet

from .models import Role

ROLE_ACTIONS: dict[str, tuple[str, ...]] = {
    Role.ADMIN: ("add", "change", "delete", "view", "use"),
    Role.DEVELOPER: ("add", "change", "delete", "view", "use"),
    Role.USER: ("view", "use"),
}


def owned_models(app_config: AppConfig | None = None):
    from agentmesh.core.models import OwnedModel

    models = app_config.get_models() if app_config else apps.get_models()
    return [m for m in models if issubclass(m, OwnedModel)]


def sync_role_groups(sender: AppConfig | None = None, using: str = "default", **kwargs) -> None:
    """Give each role group its model permissions on the owned models of `sender`."""
    models = owned_models(sender)
    if not models:
        return
    for role, actions in ROLE_ACTIONS.items():
        group, _ = Group.objects.using(using).get_or_create(name=role)
        for model in models:
            ct = ContentType.objects.db_manager(using).get_for_model(model)
            codenames = [f"{action}_{model._meta.model_name}" for action in actions]
            perms = Permission.objects.using(using).filter(content_type=ct, codename__in=codenames)
            group.permissions.add(*perms)


def group_permissions(user) -> QuerySet:
    """The model permissions a user holds through groups: its role's group, by role, and the
    other groups it is a member of (membership of a role group counts for nothing here)."""
    groups = Group.objects.filter((Q(user=user) & ~Q(name__in=Role.values)) | Q(name=user.role))
    return Permission.objects.filter(group__in=groups)


def _membership():
    return get_user_model().groups.through


def sync_user_role_group(user) -> None:
    """Keep a user in exactly the group of its role.

    Writes the membership rows directly: no m2m_changed signal, so the receiver below does
    not call itself."""
    if user.pk is None:
        return
    role_groups = dict(Group.objects.filter(name__in=Role.values).values_list("name", "pk"))
    if user.role not in role_groups:
        role_groups[user.role] = Group.objects.get_or_create(name=user.role)[0].pk
    target = role_groups[user.role]
    through = _membership()
    current = set(
        through.objects.filter(user_id=user.pk, group_id__in=role_groups.values()).values_list(
            "group_id", flat=True
        )
    )
    if current == {target}:
        return
    through.objects.filter(user_id=user.pk, group_id__in=current - {target}).delete()
    if target not in current:
        through.objects.create(user_id=user.pk, group_id=target)


def sync_role_memberships(sender: AppConfig | None = None, using: str = "default", **kwargs) -> None:
    """Put every user in the group of its role and no other role group (after a migrate, or
    after a role group's members were edited from the group's side)."""
    User = get_user_model()
    through = _membership()
    for role in Role.values:
        group, _ = Group.objects.using(using).get_or_create(name=role)
        through.objects.using(using).filter(group_id=group.pk).exclude(user__role=role).delete()
        missing = (
            User.objects.using(using).filter(role=role).exclude(groups=group).values_list("pk", flat=True)
        )
        through.objects.using(using).bulk_create(
            [through(user_id=pk, group_id=group.pk) for pk in missing], ignore_conflicts=True
        )


def on_groups_changed(sender, instance, action, reverse, **kwargs) -> None:
    """m2m_changed receiver for User.groups: whatever edited the groups, the role's group stays."""
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if not reverse:
        sync_user_role_group(instance)
    elif instance.name in Role.values:
        sync_role_memberships(using=kwargs.get("using") or "default")
