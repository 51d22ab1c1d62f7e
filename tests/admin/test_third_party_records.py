"""Records third-party apps keep (simplejwt refresh tokens, django-axes failed logins) are
read-only in the admin; revoke and unlock go through the accounts services, audited."""

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.test import Client
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from agentmesh.accounts.models import Role
from observability.models import ObservabilityEvent

pytestmark = pytest.mark.django_db


def _actions(response) -> list[str]:
    form = response.context["action_form"]
    return [value for value, _ in form.fields["action"].choices] if form else []


def _read_only(client, base: str, pk) -> None:
    listed = client.get(base)
    assert listed.status_code == 200 and "delete_selected" not in _actions(listed)
    assert client.get(f"{base}add/").status_code == 403
    assert client.get(f"{base}{pk}/delete/").status_code == 403
    assert client.post(f"{base}{pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.post(f"{base}{pk}/change/", {"jti": "x", "username": "x"}).status_code == 403
    detail = client.get(f"{base}{pk}/change/")
    assert detail.status_code == 200 and detail.context["has_change_permission"] is False


def test_refresh_tokens_are_view_only_and_never_show_the_token(operator, developer):
    refresh = RefreshToken.for_user(developer)
    token = OutstandingToken.objects.get(jti=refresh["jti"])
    _read_only(operator, "/admin/token_blacklist/outstandingtoken/", token.pk)
    page = operator.get(f"/admin/token_blacklist/outstandingtoken/{token.pk}/change/").content.decode()
    assert refresh["jti"] in page and str(refresh) not in page
    assert str(refresh) not in operator.get("/admin/token_blacklist/outstandingtoken/").content.decode()

    refresh.blacklist()
    revoked = BlacklistedToken.objects.get(token=token)
    _read_only(operator, "/admin/token_blacklist/blacklistedtoken/", revoked.pk)
    found = operator.get("/admin/token_blacklist/blacklistedtoken/", {"q": refresh["jti"]}).context["cl"]
    assert [r.pk for r in found.result_list] == [revoked.pk]


def test_revoke_a_refresh_token_from_its_page(operator, developer, api_client):
    refresh = RefreshToken.for_user(developer)
    token = OutstandingToken.objects.get(jti=refresh["jti"])
    url = f"/admin/token_blacklist/outstandingtoken/{token.pk}/do/revoke/"
    assert url in operator.get(f"/admin/token_blacklist/outstandingtoken/{token.pk}/change/").content.decode()
    assert operator.get(url).status_code == 200 and not BlacklistedToken.objects.exists()

    done = operator.post(url, follow=True)
    assert "revoked: it can no longer be refreshed" in done.content.decode()
    assert BlacklistedToken.objects.filter(token=token).exists()
    audit = ObservabilityEvent.objects.get(type="audit.revoke")
    assert audit.payload["channel"] == "admin" and audit.actor == operator.user
    assert audit.payload["jti"] == refresh["jti"] and str(refresh) not in str(audit.payload)

    refreshed = api_client.post("/api/v1/auth/refresh", {"refresh": str(refresh)}, format="json")
    assert refreshed.status_code == 401
    assert operator.get(url).status_code == 404  # already revoked: the action no longer applies


def test_bulk_revoke_and_the_revoked_filter(operator, developer):
    tokens = [RefreshToken.for_user(developer) for _ in range(2)]
    pks = list(OutstandingToken.objects.values_list("pk", flat=True))
    base = "/admin/token_blacklist/outstandingtoken/"
    response = operator.post(base, {"action": "revoke", "_selected_action": pks}, follow=True)
    assert "2 refresh token(s) revoked." in response.content.decode()
    assert BlacklistedToken.objects.count() == len(tokens)
    assert operator.get(base, {"revoked": "no"}).context["cl"].result_count == 0
    assert operator.get(base, {"revoked": "yes"}).context["cl"].result_count == 2


def test_staff_who_is_not_a_platform_admin_cannot_revoke(make_user, developer):
    from django.contrib.auth.models import Permission

    staff = make_user(Role.DEVELOPER, is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_outstandingtoken"))
    client = Client()
    client.force_login(staff)
    RefreshToken.for_user(developer)
    token = OutstandingToken.objects.get()
    assert client.get(f"/admin/token_blacklist/outstandingtoken/{token.pk}/change/").status_code == 200
    assert client.post(f"/admin/token_blacklist/outstandingtoken/{token.pk}/do/revoke/").status_code == 403
    client.post(
        "/admin/token_blacklist/outstandingtoken/", {"action": "revoke", "_selected_action": [token.pk]}
    )
    assert not BlacklistedToken.objects.exists()


def _login_records():
    common = {
        "username": "mallory",
        "ip_address": "203.0.113.5",
        "user_agent": "x",
        "path_info": "/admin/login/",
    }
    attempt = AccessAttempt.objects.create(failures_since_start=5, get_data="", post_data="", **common)
    log = AccessLog.objects.create(**common)
    failure = AccessFailureLog.objects.create(locked_out=True, **common)
    return attempt, log, failure


def test_login_records_are_view_only(operator):
    attempt, log, failure = _login_records()
    _read_only(operator, "/admin/axes/accessattempt/", attempt.pk)
    _read_only(operator, "/admin/axes/accesslog/", log.pk)
    _read_only(operator, "/admin/axes/accessfailurelog/", failure.pk)
    assert AccessAttempt.objects.count() == AccessLog.objects.count() == AccessFailureLog.objects.count() == 1


def test_unlock_from_the_attempt_page_forgets_it_audited(operator):
    attempt, _, _ = _login_records()
    url = f"/admin/axes/accessattempt/{attempt.pk}/do/unlock/"
    assert url in operator.get(f"/admin/axes/accessattempt/{attempt.pk}/change/").content.decode()
    assert operator.get(url).status_code == 200 and AccessAttempt.objects.exists()
    done = operator.post(url, follow=True)
    assert "Failed logins of mallory from 203.0.113.5 forgotten." in done.content.decode()
    assert not AccessAttempt.objects.exists()
    audit = ObservabilityEvent.objects.get(type="audit.unlock")
    assert audit.payload["channel"] == "admin" and audit.actor == operator.user
    assert audit.payload["usernames"] == ["mallory"] and audit.payload["count"] == 1
