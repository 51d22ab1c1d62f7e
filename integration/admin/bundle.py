"""Integration jobs (master-data sync runs …) are history: view only."""

from django.contrib import admin

from agentmesh.core.admin import HistoryAdmin
from agentmesh.core.admin_display import EMPTY, IdSearchMixin, human_duration, pretty_json, short_id

from ..models import IntegrationJob


@admin.register(IntegrationJob)
class IntegrationJobAdmin(IdSearchMixin, HistoryAdmin):
    list_display = ("job_id", "kind", "status", "owner", "created_at", "finished_at", "duration")
    list_filter = ("kind", "status", "created_at", "finished_at")
    search_fields = ("=owner__username", "error")
    list_select_related = ("owner",)
    date_hierarchy = "created_at"
    fields = (
        "id",
        "kind",
        "status",
        "owner",
        "created_at",
        "started_at",
        "finished_at",
        "duration",
        "error",
        "params_pretty",
        "report_pretty",
    )
    readonly_fields = ("duration", "params_pretty", "report_pretty")

    @admin.display(description="id", ordering="id")
    def job_id(self, obj):
        return short_id(obj.pk)

    @admin.display(description="duration")
    def duration(self, obj):
        if not (obj.started_at and obj.finished_at):
            return EMPTY
        return human_duration((obj.finished_at - obj.started_at).total_seconds() * 1000)

    @admin.display(description="parameters")
    def params_pretty(self, obj):
        return pretty_json(obj.params)

    @admin.display(description="report")
    def report_pretty(self, obj):
        return pretty_json(obj.report, open_=False)
