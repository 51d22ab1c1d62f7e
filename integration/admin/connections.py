from django.contrib import admin, messages

from agentmesh.core.admin import ObjectAction, ObjectActionsMixin, ServiceBackedAdmin
from agentmesh.core.admin_display import IdSearchMixin

from ..models import ApiConnection
from ..services import connections as services


def _check(request, connection, data):
    checked = services.api_connection_check(connection=connection, actor=request.user)
    detail = checked.last_check_error or f"answered {checked.last_check_status}"
    return f"{checked.name}: {'ok' if checked.last_check_ok else 'failed'} ({detail})"


@admin.register(ApiConnection)
class ApiConnectionAdmin(IdSearchMixin, ObjectActionsMixin, ServiceBackedAdmin):
    """The credential is a secret reference: only its mask is shown (Secret.__str__)."""

    list_display = ["name", "base_url", "auth_type", "last_check_ok", "last_check_at", "owner", "updated_at"]
    list_filter = ["auth_type", "last_check_ok", "last_check_at", "updated_at"]
    search_fields = ["name", "base_url", "description", "=owner__username"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner", "secret"]
    readonly_fields = ["last_check_at", "last_check_ok", "last_check_status", "last_check_error"]
    service_fields = tuple(sorted(services.API_CONNECTION_FIELDS))
    actions = ["check_connections"]
    object_actions = (
        ObjectAction(
            name="check",
            label="Check now",
            run=_check,
            description="Call the connection's health path and record the answer.",
        ),
    )

    def save_via_service(self, request, obj, form, change):
        values = self.changed_values(form)
        if change:
            return services.api_connection_update(connection=obj, actor=request.user, **values)
        name = values.pop("name")
        return services.api_connection_create(
            owner=form.cleaned_data["owner"], name=name, actor=request.user, **values
        )

    @admin.action(description="Check the selected connections (call their health path)")
    def check_connections(self, request, queryset):
        for connection in queryset:
            checked = services.api_connection_check(connection=connection, actor=request.user)
            level = messages.SUCCESS if checked.last_check_ok else messages.WARNING
            detail = checked.last_check_error or f"answered {checked.last_check_status}"
            self.message_user(request, f"{checked.name}: {detail}", level)
