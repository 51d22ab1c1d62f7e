from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm
from django.contrib.auth.models import Group

from agentmesh.core.admin import AuditedAdminMixin
from agentmesh.core.audit import audited
from agentmesh.core.signals import MASK

from . import services
from .models import Role, User


class AuditedPasswordChangeForm(AdminPasswordChangeForm):
    """The admin's password page saves the form itself (not `save_model`): audit it here."""

    def save(self, commit=True):
        user = super().save(commit=commit)
        if commit:
            audited("update", user, changes={"password": MASK})
        return user


@admin.register(User)
class UserAdmin(AuditedAdminMixin, DjangoUserAdmin):
    change_password_form = AuditedPasswordChangeForm
    list_display = ["username", "email", "role", "is_active", "is_staff", "last_login", "date_joined"]
    list_filter = ["role", "is_active", "is_staff", "is_superuser"]
    search_fields = ["username", "email", "first_name", "last_name"]
    fieldsets = [
        *DjangoUserAdmin.fieldsets,
        ("Agent Mesh", {"fields": ["role"]}),
    ]
    actions = ["unlock_login"]
    add_fieldsets = [
        (None, {"classes": ["wide"], "fields": ["username", "email", "role", "password1", "password2"]}),
    ]

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        # The role decides the role group: the form offers only the other groups.
        if db_field.name == "groups":
            kwargs["queryset"] = Group.objects.exclude(name__in=Role.values)
            kwargs["help_text"] = "Groups besides the role's own group, which follows the Role field."
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    @admin.action(description="Unlock login (forget failed attempts)", permissions=["change"])
    def unlock_login(self, request, queryset):
        removed = sum(services.user_login_unlock(user=user) for user in queryset)
        self.message_user(
            request,
            f"Unlocked {queryset.count()} account(s) ({removed} failed-attempt record(s) removed). "
            "An address locked out for failures across accounts is unlocked under Axes: Access attempts.",
            messages.SUCCESS,
        )


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(AuditedAdminMixin, DjangoGroupAdmin):
    """Django's group admin, audited (a group's permissions are grants)."""


from . import admin_third_party  # noqa: E402, F401  (JWT and login-lockout records, read-only)
