from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm
from django.contrib.auth.models import Group

from agentmesh.core.admin import AuditedAdminMixin
from agentmesh.core.audit import audited
from agentmesh.core.signals import MASK

from .models import User


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
    add_fieldsets = [
        (None, {"classes": ["wide"], "fields": ["username", "email", "role", "password1", "password2"]}),
    ]


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(AuditedAdminMixin, DjangoGroupAdmin):
    """Django's group admin, audited (a group's permissions are grants)."""
