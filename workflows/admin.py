"""Admin pages: workflows save through the services; versions, executions and steps are
read-only records."""

from django.contrib import admin

from agentmesh.core.admin import AuditedAdmin, ServiceBackedAdmin

from . import selectors, services
from .models import StepExecution, Workflow, WorkflowExecution, WorkflowVersion


@admin.register(Workflow)
class WorkflowAdmin(ServiceBackedAdmin):
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

    # Deleting goes through the service (history kept, refused while runs are unfinished);
    # the confirmation page lists the unfinished ones as what prevents it.
    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        blocking = [
            f"Unfinished execution {each.pk} ({each.status})"
            for each in selectors.unfinished_executions(objs)[:20]
        ]
        return deleted, counts, perms_needed, [*protected, *blocking]

    def delete_model(self, request, obj):
        services.workflow_delete(workflow=obj)

    def delete_queryset(self, request, queryset):
        for workflow in queryset:
            services.workflow_delete(workflow=workflow)


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
