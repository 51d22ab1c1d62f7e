"""Admin pages: tools save, validate, deploy and undeploy through the services (audited, channel
`admin`); tool executions are append-only history, each page showing the call's arguments
(as recorded: secrets redacted), result and error, who called it (the agent run or workflow
step linked) and its trace."""

import uuid

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from agentmesh.core.admin import (
    DeleteKeepingHistoryMixin,
    HistoryAdmin,
    ObjectAction,
    ObjectActionsMixin,
    ServiceBackedAdmin,
)
from agentmesh.core.admin_display import (
    EMPTY,
    IdSearchMixin,
    RecordDisplay,
    admin_link,
    changelist_link,
    created,
    duration,
    finished,
    model_admin_url,
    pretty_json,
    short_id,
    started,
    truncated,
)
from agentmesh.core.exceptions import ServiceValidationError

from . import selectors, services
from .models import CallerType, Tool, ToolExecution, ToolStatus


# --- tools ----------------------------------------------------------------------------------
def _validate(request, tool, data):
    checks = services.tool_validate(tool=tool, actor=request.user)
    failed = [c for c in checks if not c.ok]
    if failed:
        raise ServiceValidationError("; ".join(f"{c.name}: {c.message}" for c in failed), field="validation")
    return f"{tool.name} passed validation ({len(checks)} checks)."


def _deploy(request, tool, data):
    tool = services.tool_deploy(tool=tool, actor=request.user)
    return f"Deployed {tool.name} v{tool.version}."


def _undeploy(request, tool, data):
    tool = services.tool_undeploy(tool=tool, actor=request.user)
    return f"Undeployed {tool.name} ({tool.status}); deploying again needs no new validation."


TOOL_ACTIONS = (
    ObjectAction(
        name="validate",
        label="Validate",
        run=_validate,
        available=lambda tool: tool.status != ToolStatus.DEPLOYED,
        description="Run the static and live checks? A tool that passes them all becomes validated.",
    ),
    ObjectAction(
        name="deploy",
        label="Deploy",
        run=_deploy,
        available=lambda tool: tool.status in (ToolStatus.VALIDATED, ToolStatus.DISABLED),
        description="Let agents and workflows call this version of the tool?",
    ),
    ObjectAction(
        name="undeploy",
        label="Undeploy",
        run=_undeploy,
        available=lambda tool: tool.status == ToolStatus.DEPLOYED,
        description="Take the tool out of production (disabled)? Calls already running finish.",
    ),
)


@admin.register(Tool)
class ToolAdmin(ObjectActionsMixin, DeleteKeepingHistoryMixin, ServiceBackedAdmin):
    list_display = ["name", "type", "category", "status", "version", "owner", "updated_at"]
    list_filter = ["type", "status", "category"]
    search_fields = ["name", "slug", "description", "category"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    readonly_fields = [
        "slug",
        "version",
        "status",
        "validated_at",
        "validation_report_pretty",
        "deployed_at",
        "executions",
    ]
    exclude = ["validation_report"]
    service_fields = services.TOOL_FIELDS
    actions = ["validate_tools", "deploy_tools", "undeploy_tools"]
    object_actions = TOOL_ACTIONS

    @admin.display(description="Validation report")
    def validation_report_pretty(self, obj):
        if obj is None or not obj.validation_report:
            return EMPTY
        return format_html_join(
            "",
            "<div>{} <strong>{}</strong>: {}</div>",
            (("✔" if c.get("ok") else "✘", c.get("name"), c.get("message")) for c in obj.validation_report),
        )

    @admin.display(description="Executions")
    def executions(self, obj):
        if obj is None or obj.pk is None:
            return EMPTY
        return changelist_link(ToolExecution, "all calls of this tool", tool__id__exact=obj.pk)

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

    @admin.action(description="Validate the selected tools", permissions=["object_action"])
    def validate_tools(self, request, queryset):
        valid = sum(
            all(c.ok for c in services.tool_validate(tool=tool, actor=request.user)) for tool in queryset
        )
        self.message_user(request, f"{valid} of {queryset.count()} tools passed validation.")

    @admin.action(description="Deploy the selected (validated) tools", permissions=["object_action"])
    def deploy_tools(self, request, queryset):
        deployed = 0
        for tool in queryset:
            try:
                services.tool_deploy(tool=tool, actor=request.user)
                deployed += 1
            except services.ConflictError:
                pass
        self.message_user(request, f"{deployed} of {queryset.count()} tools deployed.")

    @admin.action(description="Undeploy the selected tools", permissions=["object_action"])
    def undeploy_tools(self, request, queryset):
        for tool in queryset:
            services.tool_undeploy(tool=tool, actor=request.user)
        self.message_user(request, "Undeployed.")


# --- executions -----------------------------------------------------------------------------
@admin.register(ToolExecution)
class ToolExecutionAdmin(IdSearchMixin, RecordDisplay, HistoryAdmin):
    id_search_fields = ("pk", "caller_ref")
    list_display = [
        "short_pk",
        "tool_and_version",
        "status_text",
        "error_kind",
        "caller",
        duration,
        created,
    ]
    list_display_links = ["short_pk"]
    list_filter = [
        "status",
        ("tool", admin.RelatedOnlyFieldListFilter),
        "error_kind",
        "caller_type",
        "is_test",
        "created_at",
    ]
    search_fields = ["id", "tool_name", "caller_ref", "trace_id", "user__username"]
    list_select_related = ["user"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "full_id",
                    "tool_link",
                    "tool_version",
                    "status_text",
                    "error_kind",
                    "attempt",
                    "user",
                    "caller",
                    "is_test",
                    "created_at",
                    started,
                    finished,
                    duration,
                ]
            },
        ),
        ("Arguments, result and error", {"fields": ["arguments_pretty", "result_pretty", "error_text"]}),
        ("Trace", {"fields": ["trace", "metadata_pretty"]}),
    ]
    readonly_fields = [
        "full_id",
        "tool_link",
        "status_text",
        "caller",
        "created_at",
        started,
        finished,
        duration,
        "arguments_pretty",
        "result_pretty",
        "error_text",
        "trace",
        "metadata_pretty",
    ]

    @admin.display(description="Tool", ordering="tool_name")
    def tool_and_version(self, obj):
        return format_html("{} v{}", truncated(obj.tool_name, 28), obj.tool_version)

    @admin.display(description="Status", ordering="status")
    def status_text(self, obj):
        return obj.status

    @admin.display(description="Tool")
    def tool_link(self, obj):
        if obj.tool_id is None:
            return f"{obj.tool_name} (deleted)"
        return admin_link(obj.tool, obj.tool_name or str(obj.tool))

    @admin.display(description="Caller")
    def caller(self, obj):
        """The agent run or workflow step that made the call, linked."""
        if not obj.caller_ref:
            return obj.get_caller_type_display()
        model = None
        if obj.caller_type == CallerType.AGENT_RUN:
            from agents.models import AgentRun as model
        elif obj.caller_type == CallerType.WORKFLOW_STEP:
            from workflows.models import StepExecution as model
        pk = _uuid_or_none(obj.caller_ref)
        url = model_admin_url(model, pk) if model is not None and pk is not None else None
        return format_html("{} {}", obj.get_caller_type_display(), short_id(obj.caller_ref, url=url))

    @admin.display(description="Arguments (secrets redacted)")
    def arguments_pretty(self, obj):
        return pretty_json(obj.arguments, open_=True)

    @admin.display(description="Result")
    def result_pretty(self, obj):
        return pretty_json(obj.result, open_=True)


def _uuid_or_none(value: str):
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
