"""Client address, login throttle and lockout (django-axes) on the API and the admin login."""

import pytest
from django.test import Client, override_settings

from agentmesh.accounts.models import Role
from tests.api_base import assert_problem

PASSWORD = "s3cure-Passw0rd!"
LOGIN = "/api/v1/auth/login"
pytestmark = pytest.mark.django_db
lockout = override_settings(AXES_ENABLED=True, AXES_FAILURE_LIMIT=3)


def login(client, username, password=PASSWORD, **extra):
    return client.post(LOGIN, {"username": username, "password": password}, format="json", **extra)


@pytest.fixture
def auth_rate_3(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "auth": "3/minute"},
    }


def test_forwarded_for_does_not_escape_the_throttle_by_default(api_client, developer, auth_rate_3):
    for n in range(3):
        assert (
            login(api_client, developer.username, "wrong", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code
            == 401
        )
    response = login(api_client, developer.username, HTTP_X_FORWARDED_FOR="203.0.113.99")
    assert_problem(response, 429)
    assert "Retry-After" in response


def test_forwarded_for_is_honoured_behind_one_trusted_proxy(api_client, developer, auth_rate_3, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    # The proxy appends the address it saw: the last entry. Entries left of it are the client's own.
    for n in range(3):
        response = login(
            api_client, developer.username, "wrong", HTTP_X_FORWARDED_FOR=f"10.9.9.{n}, 203.0.113.7"
        )
        assert response.status_code == 401
    assert_problem(login(api_client, developer.username, HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.7"), 429)
    # Another client behind the same proxy is counted on its own.
    assert login(api_client, developer.username, HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 200


@lockout
def test_failed_logins_for_one_account_from_many_addresses_lock_it(api_client, developer, make_user):
    # username and email count as one account
    for n, identifier in enumerate([developer.username, developer.email.upper(), developer.username]):
        assert login(api_client, identifier, "wrong", REMOTE_ADDR=f"198.51.100.{n}").status_code in (401, 429)
    response = login(api_client, developer.username, REMOTE_ADDR="198.51.100.50")  # the right password
    body = assert_problem(response, 429)
    assert body["errors"][0]["code"] == "locked_out" and "locked" in body["detail"]
    assert int(response["Retry-After"]) > 0
    assert_problem(login(api_client, developer.email, REMOTE_ADDR="198.51.100.51"), 429)
    # the addresses themselves are not locked: another account logs in from them
    other = make_user(Role.USER)
    assert login(api_client, other.username, REMOTE_ADDR="198.51.100.0").status_code == 200


@lockout
def test_failed_logins_from_one_address_across_accounts_lock_the_address(api_client, developer):
    for n in range(3):
        # a forged X-Forwarded-For changes nothing: the address is REMOTE_ADDR
        login(api_client, f"nobody{n}", "wrong", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
    assert_problem(login(api_client, developer.username), 429)
    assert login(api_client, developer.username, REMOTE_ADDR="192.0.2.10").status_code == 200


@lockout
def test_admin_login_is_locked_out_too(make_user):
    admin = make_user(Role.ADMIN, is_staff=True, is_superuser=True)
    client = Client()
    for _ in range(3):
        client.post("/admin/login/", {"username": admin.username, "password": "wrong"})
    response = client.post("/admin/login/?next=/admin/", {"username": admin.username, "password": PASSWORD})
    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/html")
    assert "Too many failed login attempts" in response.content.decode()
    assert int(response["Retry-After"]) > 0
    assert "_auth_user_id" not in client.session


@lockout
def test_unlock_admin_action_lets_the_account_log_in_again(api_client, developer, make_user):
    for n in range(3):
        login(api_client, developer.username, "wrong", REMOTE_ADDR=f"198.51.100.{n}")
    assert_problem(login(api_client, developer.username, REMOTE_ADDR="198.51.100.9"), 429)

    admin = Client()
    admin.force_login(make_user(Role.ADMIN, is_staff=True, is_superuser=True))
    changelist = "/admin/accounts/user/"
    assert "unlock_login" in admin.get(changelist).content.decode()
    response = admin.post(
        changelist, {"action": "unlock_login", "_selected_action": [developer.pk]}, follow=True
    )
    assert response.status_code == 200 and "Unlocked 1 account" in response.content.decode()

    assert login(api_client, developer.username, REMOTE_ADDR="198.51.100.9").status_code == 200


@lockout
def test_unlock_action_in_the_axes_admin_unlocks_an_address(api_client, developer, make_user):
    for n in range(3):
        login(api_client, f"nobody{n}", "wrong")
    assert_problem(login(api_client, developer.username), 429)

    from axes.models import AccessAttempt

    admin = Client()
    admin.force_login(make_user(Role.ADMIN, is_staff=True, is_superuser=True))
    attempts = list(AccessAttempt.objects.filter(ip_address="127.0.0.1").values_list("pk", flat=True))
    assert len(attempts) >= 3  # the refused login of the locked address counts too
    # The records are read-only (no delete): the Unlock action forgets them through the service.
    assert "delete_selected" not in admin.get("/admin/axes/accessattempt/").content.decode()
    response = admin.post("/admin/axes/accessattempt/", {"action": "unlock", "_selected_action": attempts})
    assert response.status_code == 302
    assert not AccessAttempt.objects.filter(pk__in=attempts).exists()
    assert login(api_client, developer.username).status_code == 200
