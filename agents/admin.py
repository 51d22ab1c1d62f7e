"""Admin pages: agents save, deploy and undeploy through the services; versions, runs, steps,
conversations and messages are append-only history. A run's page tells its story: its steps
(LLM calls and tool calls, with the tool executions linked) and its messages in order, its
trace; an operator cancels it there through the service (audited, channel `admin`)."""

import contextlib
import json

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from agentmesh.core.admin import (
    DeleteKeepingHistoryMixin,
    HistoryAdmin,
    ObjectAction,
    ObjectActionsMixin,
    ReadOnlyInline,
    ServiceBackedAdmin,
)
from agentmesh.core.admin_display import (
    EMPTY,
    IdSearchMixin,
    RecordDisplay,
    admin_link,
    admin_url,
    changelist_link,
    cost,
    created,
    duration,
    finished,
    model_admin_url,
    pretty_json,
    short_id,
    started,
    status,
    tokens,
    truncated,
)
from tools.models import ToolExecution

from . import selectors, services
from .models import (
    FINISHED_RUN_STATUSES,
    Agent,
    AgentRun,
    AgentRunStep,
    AgentStatus,
    AgentVersion,
    Conversation,
    Message,
)
from .runs import run_cancel

#: rows shown inline (a long conversation must not make a huge page); the rest are linked
ROWS_SHOWN = 200


class FirstRowsInline(ReadOnlyInline):
    def rows_shown(self) -> int:
        return ROWS_SHOWN


def readable_arguments(value):
    """Tool-call `arguments` arrive as JSON text inside JSON; shown decoded when they parse."""
    if isinstance(value, list):
        return [readable_arguments(item) for item in value]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "arguments" and isinstance(item, str):
                with contextlib.suppress(ValueError):
                    item = json.loads(item)
            out[key] = readable_arguments(item)
        return out
    return value


class MessageDisplay:
    @admin.display(description="Content")
    def content_pretty(self, obj):
        return pretty_json(obj.content) if obj.content else EMPTY

    @admin.display(description="Tool calls")
    def tool_calls_pretty(self, obj):
        return pretty_json(readable_arguments(obj.tool_calls))


# --- agents ---------------------------------------------------------------------------------
def _deploy(request, agent, data):
    version, checks = services.agent_deploy(agent=agent, actor=request.user)
    if version is None:
        raise services.DeployFailed(checks)
    return f"Deployed {agent.name} as version {version.version}."


def _undeploy(request, agent, data):
    services.agent_undeploy(agent=agent, actor=request.user)
    return f"Undeployed {agent.name}; runs already going finish."


AGENT_ACTIONS = (
    ObjectAction(
        name="deploy",
        label="Deploy",
        run=_deploy,
        description="Run the deploy checks and, when all pass, freeze the agent into a new version "
        "that new runs use?",
    ),
    ObjectAction(
        name="undeploy",
        label="Undeploy",
        run=_undeploy,
        available=lambda agent: agent.status == AgentStatus.DEPLOYED,
        description="Stop new runs of this agent? Runs already going finish; its versions stay.",
    ),
)


@admin.register(Agent)
class AgentAdmin(ObjectActionsMixin, DeleteKeepingHistoryMixin, ServiceBackedAdmin):
    list_display = ["name", "status", "model", "deployed_version", "owner", "updated_at"]
    list_filter = ["status", "model__provider"]
    search_fields = ["name", "description"]
    list_select_related = ["owner", "model", "deployed_version"]
    raw_id_fields = ["owner"]
    filter_horizontal = ["tools", "skills", "constraints"]
    readonly_fields = ["status", "deployed_version", "deployed_at", "runs"]
    service_fields = services.AGENT_FIELDS
    actions = ["deploy_agents", "undeploy_agents"]
    object_actions = AGENT_ACTIONS

    @admin.display(description="Runs")
    def runs(self, obj):
        if obj is None or obj.pk is None:
            return EMPTY
        return changelist_link(AgentRun, "all runs of this agent", agent__id__exact=obj.pk)

    def changed_values(self, form) -> dict:
        values = super().changed_values(form)
        for name in services.M2M_FIELDS:
            if name in values:
                values[name] = list(values[name])
        return values

    def save_via_service(self, request, obj, form, change):
        values = self.changed_values(form)
        if change:
            return services.agent_update(agent=obj, **values)
        return services.agent_create(owner=form.cleaned_data["owner"], **values)

    def get_deleted_objects(self, objs, request):
        # Versions are append-only in their own admin, but go with their agent (the delete
        # service's rule); the unfinished runs are what may block it.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, perms_needed - {AgentVersion._meta.verbose_name}, protected

    unfinished_label = "run"

    def unfinished(self, objs):
        return selectors.unfinished_runs(objs)

    def delete_object(self, obj) -> None:
        services.agent_delete(agent=obj)

    def save_related(self, request, form, formsets, change):
        # The service already set the many-to-many fields; only the inlines are left.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    @admin.action(description="Deploy the selected agents", permissions=["object_action"])
    def deploy_agents(self, request, queryset):
        failed = []
        for agent in queryset:
            version, checks = services.agent_deploy(agent=agent, actor=request.user)
            if version is None:
                failed.append(f"{agent.name} ({', '.join(c.name for c in checks if not c.ok)})")
        deployed = queryset.count() - len(failed)
        message = f"{deployed} of {queryset.count()} agents deployed."
        if failed:
            message += " Failed checks: " + "; ".join(failed) + "."
        self.message_user(request, message)

    @admin.action(description="Undeploy the selected agents", permissions=["object_action"])
    def undeploy_agents(self, request, queryset):
        for agent in queryset:
            services.agent_undeploy(agent=agent, actor=request.user)
        self.message_user(request, "Undeployed.")


@admin.register(AgentVersion)
class AgentVersionAdmin(HistoryAdmin):
    """What deploy froze: runs pin it, so it is never edited or deleted here."""

    list_display = ["agent", "version", "created_by", "created_at"]
    search_fields = ["agent__name"]
    list_select_related = ["agent", "created_by"]
    fields = ["agent", "version", "snapshot_pretty", "created_by", "created_at"]
    readonly_fields = ["snapshot_pretty", "created_at"]

    @admin.display(description="Snapshot")
    def snapshot_pretty(self, obj):
        return pretty_json(obj.snapshot, open_=True)


# --- conversations and messages -------------------------------------------------------------
class ConversationMessageInline(MessageDisplay, FirstRowsInline):
    model = Message
    fk_name = "conversation"
    ordering = ["seq"]
    fields = ["seq", "role", "content_pretty", "tool_calls_pretty", "tool_call_id", "run_link"]
    readonly_fields = fields

    @admin.display(description="Run")
    def run_link(self, obj):
        return short_id(obj.run_id, url=model_admin_url(AgentRun, obj.run_id)) if obj.run_id else EMPTY


@admin.register(Conversation)
class ConversationAdmin(IdSearchMixin, RecordDisplay, HistoryAdmin):
    list_display = ["short_pk", "agent", "user", "title", created]
    list_display_links = ["short_pk"]
    search_fields = ["id", "title", "agent__name", "user__username"]
    list_select_related = ["agent", "user"]
    list_filter = [("agent", admin.RelatedOnlyFieldListFilter), "created_at"]
    fields = ["agent", "user", "title", "runs", "messages_link", "metadata_pretty", "created_at"]
    readonly_fields = ["runs", "messages_link", "metadata_pretty", "created_at"]
    inlines = [ConversationMessageInline]

    @admin.display(description="Runs")
    def runs(self, obj):
        return changelist_link(AgentRun, "runs on this conversation", conversation__id__exact=obj.pk)

    @admin.display(description="Messages")
    def messages_link(self, obj):
        count = obj.messages.count()
        shown = f" (the first {ROWS_SHOWN} below)" if count > ROWS_SHOWN else ""
        link = changelist_link(
            Message, f"{count} message(s) in the message list", conversation__id__exact=obj.pk
        )
        return format_html("{}{}", link, shown)


@admin.register(Message)
class MessageAdmin(IdSearchMixin, RecordDisplay, MessageDisplay, HistoryAdmin):
    id_search_fields = ("pk", "conversation_id", "run_id")
    ordering = ["-created_at"]  # newest first (the model orders by parent, for inlines)
    list_display = ["short_pk", "conversation_link", "seq", "role", "run_link", created]
    list_display_links = ["short_pk"]
    list_filter = ["role", "created_at"]
    search_fields = ["conversation__id", "run__id", "content", "tool_call_id"]
    list_select_related = ["conversation", "run"]
    fields = [
        "conversation_link",
        "run_link",
        "seq",
        "role",
        "content_pretty",
        "tool_calls_pretty",
        "tool_call_id",
        "created_at",
    ]
    readonly_fields = fields

    @admin.display(description="Conversation", ordering="conversation")
    def conversation_link(self, obj):
        return short_id(obj.conversation_id, url=model_admin_url(Conversation, obj.conversation_id))

    @admin.display(description="Run", ordering="run")
    def run_link(self, obj):
        return short_id(obj.run_id, url=model_admin_url(AgentRun, obj.run_id)) if obj.run_id else EMPTY


# --- runs -----------------------------------------------------------------------------------
def _cancel(request, run, data):
    run = run_cancel(run=run, actor=request.user)
    if run.status == "cancelled":
        return f"Run {run.pk} is cancelled."
    return f"Run {run.pk} stops at its next step (cancel requested)."


RUN_ACTIONS = (
    ObjectAction(
        name="cancel",
        label="Cancel",
        run=_cancel,
        available=lambda run: not run.finished and not run.cancel_requested,
        description="Cancel this run? A queued run ends `cancelled` now; a running one stops at its "
        "next step.",
    ),
)


class RunStepInline(FirstRowsInline):
    """LLM calls and tool calls in order, with the tool execution of each tool call."""

    model = AgentRunStep
    fk_name = "run"
    ordering = ["seq"]
    fields = [
        "seq",
        "kind",
        "name",
        status,
        duration,
        tokens,
        cost,
        "input_pretty",
        "output_pretty",
        "error_text",
        "tool_execution_link",
    ]
    readonly_fields = fields

    @admin.display(description="Input")
    def input_pretty(self, obj):
        return pretty_json(readable_arguments(obj.input))

    @admin.display(description="Output")
    def output_pretty(self, obj):
        return pretty_json(readable_arguments(obj.output))

    @admin.display(description="Error")
    def error_text(self, obj):
        return pretty_json(obj.error, summary="error", open_=True) if obj.error else EMPTY

    @admin.display(description="Tool execution")
    def tool_execution_link(self, obj):
        if not obj.tool_execution_id:
            return EMPTY
        return short_id(obj.tool_execution_id, url=model_admin_url(ToolExecution, obj.tool_execution_id))


class RunMessageInline(MessageDisplay, FirstRowsInline):
    """The messages this run added to its conversation (input, answers, tool results)."""

    model = Message
    fk_name = "run"
    ordering = ["seq"]
    fields = ["seq", "role", "content_pretty", "tool_calls_pretty", "tool_call_id"]
    readonly_fields = fields
    verbose_name_plural = "messages of this run"


@admin.register(AgentRun)
class AgentRunAdmin(IdSearchMixin, RecordDisplay, ObjectActionsMixin, HistoryAdmin):
    id_search_fields = ("pk", "conversation_id", "parent_run_id")
    list_display = [
        "short_pk",
        "agent_version",
        "status_and_reason",
        "user",
        "turns_and_calls",
        cost,
        duration,
        created,
    ]
    list_display_links = ["short_pk"]
    list_filter = [
        "status",
        "stop_reason",
        ("agent", admin.RelatedOnlyFieldListFilter),
        ("user", admin.RelatedOnlyFieldListFilter),
        "created_at",
        "background",
    ]
    search_fields = ["id", "agent_name", "user__username", "trace_id", "idempotency_key"]
    list_select_related = ["user"]
    inlines = [RunStepInline, RunMessageInline]
    object_actions = RUN_ACTIONS
    actions = ["cancel_selected"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "full_id",
                    "agent_link",
                    "agent_version_number",
                    status,
                    "stop_reason",
                    "cancel_requested",
                    "user",
                    "conversation_link",
                    "created_at",
                    started,
                    finished,
                    duration,
                    "turns",
                    "tool_calls",
                    tokens,
                    cost,
                    "background",
                ]
            },
        ),
        (
            "Input, output and error",
            {"fields": ["input_pretty", "output_text", "output_json_pretty", "error_text"]},
        ),
        ("Relations", {"fields": ["parent_link", "children", "depth"]}),
        ("Trace", {"fields": ["trace", "metadata_pretty", "idempotency_key"]}),
    ]
    readonly_fields = [
        "full_id",
        "agent_link",
        status,
        "conversation_link",
        "created_at",
        started,
        finished,
        duration,
        tokens,
        cost,
        "input_pretty",
        "output_text",
        "output_json_pretty",
        "error_text",
        "parent_link",
        "children",
        "trace",
        "metadata_pretty",
    ]

    @admin.display(description="Agent", ordering="agent_name")
    def agent_version(self, obj):
        return format_html("{} v{}", truncated(obj.agent_name, 28), obj.agent_version_number or "?")

    @admin.display(description="Status", ordering="status")
    def status_and_reason(self, obj):
        if not obj.stop_reason or obj.stop_reason == obj.status:
            return obj.status
        return format_html("{}<br><small>{}</small>", obj.status, obj.stop_reason)

    @admin.display(description="Turns / tools")
    def turns_and_calls(self, obj):
        return f"{obj.turns} / {obj.tool_calls}"

    @admin.display(description="Agent")
    def agent_link(self, obj):
        if obj.agent_id is None:
            return f"{obj.agent_name} (deleted)"
        return admin_link(obj.agent, obj.agent_name or str(obj.agent))

    @admin.display(description="Conversation")
    def conversation_link(self, obj):
        return short_id(obj.conversation_id, url=model_admin_url(Conversation, obj.conversation_id))

    @admin.display(description="Input")
    def input_pretty(self, obj):
        return pretty_json(obj.input, open_=True)

    @admin.display(description="Output")
    def output_text(self, obj):
        return pretty_json(obj.output, summary="output", open_=True) if obj.output else EMPTY

    @admin.display(description="Output (JSON)")
    def output_json_pretty(self, obj):
        return pretty_json(obj.output_json, open_=True)

    @admin.display(description="Called by run")
    def parent_link(self, obj):
        return (
            short_id(obj.parent_run_id, url=model_admin_url(AgentRun, obj.parent_run_id))
            if obj.parent_run_id
            else EMPTY
        )

    @admin.display(description="Runs it called (agent calls agent)")
    def children(self, obj):
        runs = list(obj.child_runs.only("id", "status").order_by("created_at"))
        if not runs:
            return EMPTY
        return format_html_join(
            ", ", "{} {}", ((short_id(run.pk, url=admin_url(run)), run.status) for run in runs)
        )

    @admin.action(description="Cancel the selected unfinished runs", permissions=["object_action"])
    def cancel_selected(self, request, queryset):
        count = 0
        for run in queryset.exclude(status__in=FINISHED_RUN_STATUSES):
            run_cancel(run=run, actor=request.user)
            count += 1
        self.message_user(request, f"{count} run(s) cancelled or asked to stop.")


@admin.register(AgentRunStep)
class AgentRunStepAdmin(IdSearchMixin, RecordDisplay, HistoryAdmin):
    id_search_fields = ("pk", "run_id", "tool_execution_id")
    ordering = ["-created_at"]  # newest first (the model orders by parent, for inlines)
    list_display = ["short_pk", "run_link", "seq", "kind", "name", "status", duration, cost, created]
    list_display_links = ["short_pk"]
    list_filter = ["kind", "status", "created_at"]
    search_fields = ["id", "run__id", "name", "kind"]
    list_select_related = ["run"]
    fields = [
        "run_link",
        "seq",
        "kind",
        "name",
        "status",
        duration,
        tokens,
        cost,
        "input_pretty",
        "output_pretty",
        "error_text",
        "tool_execution_link",
        "created_at",
    ]
    readonly_fields = fields

    @admin.display(description="Run", ordering="run")
    def run_link(self, obj):
        return short_id(obj.run_id, url=model_admin_url(AgentRun, obj.run_id))

    @admin.display(description="Input")
    def input_pretty(self, obj):
        return pretty_json(readable_arguments(obj.input), open_=True)

    @admin.display(description="Output")
    def output_pretty(self, obj):
        return pretty_json(readable_arguments(obj.output), open_=True)

    @admin.display(description="Tool execution")
    def tool_execution_link(self, obj):
        if not obj.tool_execution_id:
            return EMPTY
        return short_id(obj.tool_execution_id, url=model_admin_url(ToolExecution, obj.tool_execution_id))
