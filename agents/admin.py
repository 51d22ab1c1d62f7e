"""Admin pages: agents save and deploy through the services; versions, runs, steps,
conversations and messages are read-only records."""

from django.contrib import admin

from agentmesh.core.admin import AuditedAdmin, DeleteKeepingHistoryMixin, ServiceBackedAdmin

from . import selectors, services
from .models import Agent, AgentRun, AgentRunStep, AgentVersion, Conversation, Message


@admin.register(Agent)
class AgentAdmin(DeleteKeepingHistoryMixin, ServiceBackedAdmin):
    list_display = ["name", "status", "model", "deployed_version", "owner", "updated_at"]
    list_filter = ["status", "model__provider"]
    search_fields = ["name", "description"]
    list_select_related = ["owner", "model", "deployed_version"]
    raw_id_fields = ["owner"]
    filter_horizontal = ["tools", "skills", "constraints"]
    readonly_fields = ["status", "deployed_version", "deployed_at"]
    service_fields = services.AGENT_FIELDS
    actions = ["deploy_agents", "undeploy_agents"]

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

    unfinished_label = "run"

    def unfinished(self, objs):
        return selectors.unfinished_runs(objs)

    def delete_object(self, obj) -> None:
        services.agent_delete(agent=obj)

    def save_related(self, request, form, formsets, change):
        # The service already set the many-to-many fields; only the inlines are left.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    @admin.action(description="Deploy the selected agents")
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

    @admin.action(description="Undeploy the selected agents")
    def undeploy_agents(self, request, queryset):
        for agent in queryset:
            services.agent_undeploy(agent=agent, actor=request.user)
        self.message_user(request, "Undeployed.")


class ReadOnlyAdmin(AuditedAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AgentVersion)
class AgentVersionAdmin(ReadOnlyAdmin):
    list_display = ["agent", "version", "created_by", "created_at"]
    search_fields = ["agent__name"]
    list_select_related = ["agent", "created_by"]


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = ["id", "agent", "user", "title", "created_at"]
    search_fields = ["id", "title", "agent__name", "user__username"]
    list_select_related = ["agent", "user"]
    list_filter = ["agent"]


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ["conversation", "seq", "role", "run", "created_at"]
    list_filter = ["role"]
    search_fields = ["conversation__id", "content"]
    list_select_related = ["conversation"]


@admin.register(AgentRun)
class AgentRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "agent_name",
        "agent_version_number",
        "status",
        "stop_reason",
        "user",
        "turns",
        "tool_calls",
        "cost_usd",
        "duration_ms",
        "created_at",
    ]
    list_filter = ["status", "stop_reason", "background"]
    search_fields = ["id", "agent_name", "trace_id", "idempotency_key"]
    list_select_related = ["user"]


@admin.register(AgentRunStep)
class AgentRunStepAdmin(ReadOnlyAdmin):
    list_display = ["run", "seq", "kind", "name", "status", "duration_ms", "created_at"]
    list_filter = ["kind", "status"]
    search_fields = ["run__id", "name"]
    list_select_related = ["run"]
