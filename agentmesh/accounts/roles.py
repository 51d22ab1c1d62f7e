"""Roles are groups holding model permissions.

`admin` may do everything, `developer` creates and manages its own domain objects and uses
shared ones, `user` views and uses what is shared with it. The groups are created by a data
migration; their permissions on every owned domain model are (re)applied after each migrate,
because those models' permissions only exist once their app has migrated.
"""

from django.apps import AppConfig, apps
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType

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


def sync_user_role_group(user) -> None:
    """Keep a user in exactly the group of its role."""
    role_groups = Group.objects.filter(name__in=Role.values)
    current = set(user.groups.filter(pk__in=role_groups).values_list("name", flat=True))
    if current == {user.role}:
        return
    user.groups.remove(*role_groups.exclude(name=user.role))
    group, _ = Group.objects.get_or_create(name=user.role)
    user.groups.add(group)
