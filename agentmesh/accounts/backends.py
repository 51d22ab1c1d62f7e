from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend


class UsernameOrEmailBackend(ModelBackend):
    """Authenticate with a username or an email address. Inactive users are refused.

    Model permissions of the role groups follow `User.role`, not group membership
    (agentmesh.accounts.roles.group_permissions); the admin role holds every one."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None or password is None:
            return None
        User = get_user_model()
        field = "email__iexact" if "@" in username else "username"
        try:
            user = User._default_manager.get(**{field: username})
        except (User.DoesNotExist, User.MultipleObjectsReturned):
            User().set_password(password)  # same work as a real check: no timing oracle
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None

    def _get_permissions(self, user_obj, obj, from_name):
        # The admin role may do everything (system and user management, the operator console),
        # as a superuser may: every model permission, whatever its groups hold.
        from .models import Role

        if obj is None and user_obj.is_active and getattr(user_obj, "role", None) == Role.ADMIN:
            cache_name = f"_{from_name}_perm_cache"
            if not hasattr(user_obj, cache_name):
                from django.contrib.auth.models import Permission

                perms = Permission.objects.values_list("content_type__app_label", "codename").order_by()
                setattr(user_obj, cache_name, {f"{app}.{codename}" for app, codename in perms})
            return getattr(user_obj, cache_name)
        return super()._get_permissions(user_obj, obj, from_name)

    def _get_group_permissions(self, user_obj):
        from .roles import group_permissions

        return group_permissions(user_obj)
