"""Read-only admin pages of integration jobs."""

from django.contrib import admin

from ..models import IntegrationJob


@admin.register(IntegrationJob)
class IntegrationJobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "owner", "created_at", "finished_at")
    list_filter = ("kind", "status")
    search_fields = ("id", "owner__username", "error")
    readonly_fields = [f.name for f in IntegrationJob._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
