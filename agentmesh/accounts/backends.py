from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend


class UsernameOrEmailBackend(ModelBackend):
    """Authenticate with a username or an email address. Inactive users are refused.

    Model permissions of the role groups follow `User.role`, not group membership
    (agentmesh.accounts.roles.group_permissions)."""

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

    def _get_group_permissions(self, user_obj):
        from .roles import group_permissions

        return group_permissions(user_obj)
