"""Role, model and object permissions shared by every domain viewset.

Rules: admins may do everything; the owner always has full rights on its object; others
need a guardian object permission (view/use/change/delete), granted by sharing with them or
with one of their groups. Creating an object needs the model `add` permission of the role.
"""

from django.db.models import Model, Q, QuerySet
from guardian.utils import get_group_obj_perms_model, get_user_obj_perms_model
from rest_framework.permissions import SAFE_METHODS, BasePermission

SHAREABLE_ACTIONS = ("view", "use", "change")


def is_admin(user) -> bool:
    return bool(user and user.is_authenticated and getattr(user, "is_platform_admin", False))


def codename(model: type[Model], action: str) -> str:
    return f"{action}_{model._meta.model_name}"


def permitted_queryset(user, queryset: QuerySet, action: str = "view") -> QuerySet:
    """Objects of `queryset` the user may `action`: own, shared with the user or a group."""
    if is_admin(user):
        return queryset
    if not user or not user.is_authenticated:
        return queryset.none()
    model = queryset.model
    perm = codename(model, action)
    user_perms = (
        get_user_obj_perms_model(model)
        .objects.filter(user=user, permission__codename=perm)
        .values("content_object_id")
    )
    group_perms = (
        get_group_obj_perms_model(model)
        .objects.filter(group__user=user, permission__codename=perm)
        .values("content_object_id")
    )
    return queryset.filter(Q(owner=user) | Q(pk__in=user_perms) | Q(pk__in=group_perms))


def has_object_action(user, obj: Model, action: str) -> bool:
    if is_admin(user):
        return True
    if getattr(obj, "owner_id", None) == user.pk:
        return True
    return user.has_perm(codename(type(obj), action), obj)


class RoleObjectPermission(BasePermission):
    """Model permission for create, object permission for everything on an object.

    A viewset maps custom actions to object actions with `object_actions`, e.g.
    {"deploy": "change", "interact": "use"}; `share` is reserved to the owner and admins.
    List actions that create objects (imports) go in `create_actions`: they need the add permission.
    """

    default_object_actions = {
        "retrieve": "view",
        "update": "change",
        "partial_update": "change",
        "destroy": "delete",
        "share": "owner",
        "shares": "owner",
    }

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        action = getattr(view, "action", None)
        if action == "create" or action in getattr(view, "create_actions", ()):
            model = view.get_queryset().model
            return is_admin(user) or user.has_perm(f"{model._meta.app_label}.{codename(model, 'add')}")
        return True

    def required_action(self, request, view) -> str:
        mapping = {**self.default_object_actions, **getattr(view, "object_actions", {})}
        fallback = "view" if request.method in SAFE_METHODS else "change"
        return mapping.get(getattr(view, "action", None), fallback)

    def has_object_permission(self, request, view, obj) -> bool:
        action = self.required_action(request, view)
        if action == "owner":
            return is_admin(request.user) or obj.owner_id == request.user.pk
        return has_object_action(request.user, obj, action)
