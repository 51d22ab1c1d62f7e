from django.contrib import admin

from agentmesh.core.admin import HistoryAdmin

from ..models import ControlRequest, MetricSample


@admin.register(MetricSample)
class MetricSampleAdmin(HistoryAdmin):
    """Samples of the system metrics (beat task); append-only, pruned by retention."""

    list_display = ["metric", "value", "taken_at"]
    list_filter = ["metric", "taken_at"]
    search_fields = ["metric"]
    date_hierarchy = "taken_at"


@admin.register(ControlRequest)
class ControlRequestAdmin(HistoryAdmin):
    """Restarts and cache clears: who asked, what this process did, each worker's reply."""

    list_display = ["created_at", "kind", "target", "requested_by", "reply_count"]
    list_filter = ["kind", "target", "created_at"]
    search_fields = ["target", "requested_by__username"]
    list_select_related = ["requested_by"]
    readonly_fields = [
        "id",
        "kind",
        "target",
        "parameters",
        "result",
        "replies",
        "requested_by",
        "created_at",
    ]

    @admin.display(description="worker replies")
    def reply_count(self, obj) -> int:
        return len(obj.replies or [])
