"""Admin pages: workflows save through the services; versions, executions and steps are
read-only records."""

from django.contrib import admin

from agentmesh.core.admin import AuditedAdmin, DeleteKeepingHistoryMixin, ServiceBackedAdmin

from . import selectors, services
from .models import StepExecution, Workflow, WorkflowExecution, WorkflowVersion


@admin.register(Workflow)
class WorkflowAdmin(DeleteKeepingHistoryMixin, ServiceBackedAdmin):
    list_display = ["name", "status", "version", "owner", "updated_at"]
    list_filter = ["status"]
    search_fields = ["name", "description"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    readonly_fields = ["version"]
    service_fields = services.WORKFLOW_FIELDS

    def save_via_service(self, request, obj, form, change):
        values = self.changed_values(form)
        if change:
            return services.workflow_update(workflow=obj, actor=request.user, **values)
        return services.workflow_create(owner=form.cleaned_data["owner"], actor=request.user, **values)

    unfinished_label = "execution"

    def unfinished(self, objs):
        return selectors.unfinished_executions(objs)

    def delete_object(self, obj) -> None:
        services.workflow_delete(workflow=obj)


class ReadOnlyAdmin(AuditedAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(ReadOnlyAdmin):
    list_display = ["workflow", "version", "created_by", "created_at"]
    search_fields = ["workflow__name"]
    list_select_related = ["workflow", "created_by"]


@admin.register(WorkflowExecution)
class WorkflowExecutionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "workflow_name",
        "workflow_version_number",
        "status",
        "user",
        "created_at",
        "duration_ms",
    ]
    list_filter = ["status"]
    search_fields = ["id", "workflow_name", "trace_id"]
    list_select_related = ["user"]


@admin.register(StepExecution)
class StepExecutionAdmin(ReadOnlyAdmin):
    list_display = ["execution", "node_id", "node_type", "attempt", "status", "duration_ms"]
    list_filter = ["status", "node_type"]
    search_fields = ["node_id", "execution__id"]
