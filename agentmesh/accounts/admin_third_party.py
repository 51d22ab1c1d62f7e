"""The admin pages third-party apps register, made read-only records.

- simplejwt's refresh tokens (outstanding and blacklisted): view only; an outstanding token can
  be revoked (blacklisted) through the service, as logout does. The token text itself (a usable
  credential until it expires) is never shown, only its id (jti).
- django-axes' failed-login records: view only; "Unlock" forgets the selected records through
  the service (ends the lockout they caused), audited.
"""

from axes.admin import IsLockedOutFilter
from axes.conf import settings as axes_settings
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin, messages
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from agentmesh.core.admin import HistoryAdmin, ObjectAction, ObjectActionsMixin

from . import services

for _model in (OutstandingToken, BlacklistedToken, AccessAttempt, AccessLog, AccessFailureLog):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


def _revoke(request, token, data):
    if services.refresh_token_revoke(token=token):
        return f"Refresh token {token.jti} revoked: it can no longer be refreshed."
    return f"Refresh token {token.jti} was already revoked."


class RevokedFilter(admin.SimpleListFilter):
    title = "revoked"
    parameter_name = "revoked"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(blacklistedtoken__isnull=self.value() == "no")
        return queryset


@admin.register(OutstandingToken)
class OutstandingTokenAdmin(ObjectActionsMixin, HistoryAdmin):
    """Refresh tokens issued (login, refresh): view only, revocable."""

    list_display = ["jti", "user", "created_at", "expires_at", "revoked"]
    list_filter = [RevokedFilter, "created_at", "expires_at"]
    search_fields = ["=jti", "user__username", "user__email"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"
    fields = ["jti", "user", "created_at", "expires_at", "revoked"]
    readonly_fields = ["revoked"]
    actions = ["revoke"]
    object_actions = (
        ObjectAction(
            name="revoke",
            label="Revoke",
            run=_revoke,
            available=lambda token: not hasattr(token, "blacklistedtoken"),
            description="Blacklist this refresh token: it can no longer be used to get access tokens "
            "(access tokens already issued stay valid until they expire).",
        ),
    )

    @admin.display(description="revoked", boolean=True)
    def revoked(self, obj):
        return hasattr(obj, "blacklistedtoken")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user", "blacklistedtoken")

    @admin.action(description="Revoke the selected refresh tokens", permissions=["object_action"])
    def revoke(self, request, queryset):
        revoked = sum(services.refresh_token_revoke(token=token) for token in queryset)
        self.message_user(request, f"{revoked} refresh token(s) revoked.", messages.SUCCESS)


@admin.register(BlacklistedToken)
class BlacklistedTokenAdmin(HistoryAdmin):
    """Revoked refresh tokens (logout, rotation, revoke): view only."""

    list_display = ["token_jti", "token_user", "blacklisted_at", "token_expires_at"]
    list_filter = ["blacklisted_at"]
    search_fields = ["=token__jti", "token__user__username", "token__user__email"]
    list_select_related = ["token__user"]
    date_hierarchy = "blacklisted_at"
    fields = ["token_jti", "token_user", "blacklisted_at", "token_expires_at"]
    readonly_fields = fields

    @admin.display(description="jti", ordering="token__jti")
    def token_jti(self, obj):
        return obj.token.jti

    @admin.display(description="user", ordering="token__user__username")
    def token_user(self, obj):
        return obj.token.user

    @admin.display(description="expires at", ordering="token__expires_at")
    def token_expires_at(self, obj):
        return obj.token.expires_at


def _unlock(request, attempt, data):
    services.login_attempts_unlock(attempts=AccessAttempt.objects.filter(pk=attempt.pk))
    return f"Failed logins of {attempt.username or '-'} from {attempt.ip_address or '-'} forgotten."


class _AxesRecordAdmin(HistoryAdmin):
    list_filter = ["attempt_time", "path_info"]
    search_fields = ["ip_address", "username", "user_agent", "path_info"]
    date_hierarchy = "attempt_time"


class AccessAttemptAdmin(ObjectActionsMixin, _AxesRecordAdmin):
    """Failed logins counted per address and account (what locks a login out)."""

    list_display = [
        "attempt_time",
        "ip_address",
        "username",
        "path_info",
        "failures_since_start",
        "user_agent",
    ]
    list_filter = ["attempt_time", IsLockedOutFilter, "path_info"]
    fields = [
        "username",
        "ip_address",
        "path_info",
        "failures_since_start",
        "attempt_time",
        "user_agent",
        "http_accept",
        "get_data",
        "post_data",
    ]
    actions = ["unlock"]
    object_actions = (
        ObjectAction(
            name="unlock",
            label="Unlock",
            run=_unlock,
            description="Forget these failed logins: the lockout of this address and account ends.",
        ),
    )

    @admin.action(description="Unlock (forget the selected failed logins)", permissions=["object_action"])
    def unlock(self, request, queryset):
        removed = services.login_attempts_unlock(attempts=queryset)
        self.message_user(request, f"{removed} failed-login record(s) forgotten.", messages.SUCCESS)


class AccessLogAdmin(_AxesRecordAdmin):
    list_display = ["attempt_time", "logout_time", "ip_address", "username", "path_info", "user_agent"]
    list_filter = ["attempt_time", "logout_time", "path_info"]


class AccessFailureLogAdmin(_AxesRecordAdmin):
    list_display = ["attempt_time", "ip_address", "username", "path_info", "locked_out", "user_agent"]
    list_filter = ["attempt_time", "locked_out", "path_info"]


if axes_settings.AXES_ENABLE_ADMIN:
    admin.site.register(AccessAttempt, AccessAttemptAdmin)
    admin.site.register(AccessLog, AccessLogAdmin)
    admin.site.register(AccessFailureLog, AccessFailureLogAdmin)
