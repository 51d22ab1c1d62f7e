from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from rest_framework.exceptions import APIException

from agentmesh.core.admin import HistoryAdmin, ObjectAction, ObjectActionsMixin, _api_error_text

from .. import services
from ..models import Backup, BackupStatus
from ..services.backups import REQUESTED_FORMATS


class BackupCreateForm(forms.Form):
    format = forms.ChoiceField(
        choices=[(value, value) for value in REQUESTED_FORMATS],
        initial="auto",
        help_text="auto: pg_dump on PostgreSQL when a compatible client is installed, else portable.",
    )
    note = forms.CharField(max_length=500, required=False)


def _delete(request, obj, data) -> str:
    services.backup_delete(backup=obj)
    return f"Deleted backup {obj.file_name or obj.pk}."


@admin.register(Backup)
class BackupAdmin(ObjectActionsMixin, HistoryAdmin):
    """Backup records are read-only (a worker fills them in); "Create backup" on the list starts a
    job through the same service as POST /system/backup; deleting removes the archive too."""

    change_list_template = "admin/system/backup/change_list.html"
    list_display = [
        "created_at",
        "status",
        "format",
        "size_bytes",
        "duration_seconds",
        "requested_by",
        "note",
    ]
    list_filter = ["status", "format", "created_at"]
    search_fields = ["file_name", "note", "requested_by", "sha256"]
    readonly_fields = ["download"]
    object_actions = (
        ObjectAction(
            name="delete-backup",
            label="Delete backup",
            run=_delete,
            available=lambda obj: obj.status != BackupStatus.RUNNING,
            description="Delete this backup's archive from the backup storage and its record?",
        ),
    )

    @admin.display(description="Archive")
    def download(self, obj):
        if obj.status != BackupStatus.SUCCEEDED:
            return "-"
        url = reverse("system-api:backup-download", args=[obj.pk])
        return format_html('<a href="{}">Download {}</a>', url, obj.file_name)

    def get_urls(self):
        own = [
            path(
                "create/",
                self.admin_site.admin_view(self.create_view),
                name="system_backup_create",
            )
        ]
        return own + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_create_backup": self.has_object_action_permission(request),
        }
        return super().changelist_view(request, extra_context)

    def create_view(self, request):
        if not self.has_object_action_permission(request):
            raise PermissionDenied
        changelist = reverse(f"{self.admin_site.name}:system_backup_changelist")
        form = BackupCreateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                backup = services.backup_start(
                    requested_format=form.cleaned_data["format"],
                    note=form.cleaned_data["note"],
                    actor=request.user,
                )
            except APIException as exc:
                form.add_error(None, _api_error_text(exc))
            else:
                self.message_user(
                    request,
                    f"Backup {backup.pk} started ({backup.format}); refresh to follow it.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(changelist)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "changelist_url": changelist,
            "title": "Create backup",
        }
        return TemplateResponse(request, "admin/system/backup/create.html", context)
