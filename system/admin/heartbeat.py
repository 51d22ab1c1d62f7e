from django.contrib import admin

from agentmesh.core.admin import AuditedAdmin

from ..models import WorkerHeartbeat


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(AuditedAdmin):
    list_display = ["hostname", "seen_at", "beats"]
    list_filter = ["seen_at"]
    search_fields = ["hostname"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
