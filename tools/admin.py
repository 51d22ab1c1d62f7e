"""Admin pages: tools save through the services; executions are read-only records."""

from django.contrib import admin

from agentmesh.core.admin import AuditedAdmin, DeleteKeepingHistoryMixin, ServiceBackedAdmin

from . import selectors, services
from .models import Tool, ToolExecution


@admin.register(Tool)
class ToolAdmin(DeleteKeepingHistoryMixin, ServiceBackedAdmin):
    list_display = ["name", "type", "category", "status", "version", "owner", "updated_at"]
    list_filter = ["type", "status", "category"]
    search_fields = ["name", "slug", "description", "category"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    readonly_fields = ["slug", "version", "status", "validated_at", "validation_report", "deployed_at"]
    service_fields = services.TOOL_FIELDS
    actions = ["validate_tools", "deploy_tools", "undeploy_tools"]

    def save_via_service(self, request, obj, form, change):
        values = self.changed_values(form)
        if change:
            return services.tool_update(tool=obj, **values)
        return services.tool_create(owner=form.cleaned_data["owner"], **values)

    unfinished_label = "execution"

    def unfinished(self, objs):
        return selectors.unfinished_executions(objs)

    def delete_object(self, obj) -> None:
        services.tool_delete(tool=obj)

    @admin.action(description="Validate the selected tools")
    def validate_tools(self, request, queryset):
        valid = sum(
            all(c.ok for c in services.tool_validate(tool=tool, actor=request.user)) for tool in queryset
        )
        self.message_user(request, f"{valid} of {queryset.count()} tools passed validation.")

    @admin.action(description="Deploy the selected (validated) tools")
    def deploy_tools(self, request, queryset):
        deployed = 0
        for tool in queryset:
            try:
                services.tool_deploy(tool=tool, actor=request.user)
                deployed += 1
            except services.ConflictError:
                pass
        self.message_user(request, f"{deployed} of {queryset.count()} tools deployed.")

    @admin.action(description="Undeploy the selected tools")
    def undeploy_tools(self, request, queryset):
        for tool in queryset:
            services.tool_undeploy(tool=tool, actor=request.user)
        self.message_user(request, "Undeployed.")


@admin.register(ToolExecution)
class ToolExecutionAdmin(AuditedAdmin):
    list_display = [
        "id",
        "tool_name",
        "tool_version",
        "status",
        "error_kind",
        "caller_type",
        "duration_ms",
        "created_at",
    ]
    list_filter = ["status", "error_kind", "caller_type", "is_test"]
    search_fields = ["id", "tool_name", "caller_ref", "trace_id"]
    list_select_related = ["user"]
    exclude = ["pending_arguments"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
