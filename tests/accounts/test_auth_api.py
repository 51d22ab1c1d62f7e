import pytest
from django.contrib.auth.models import Group

from agentmesh.accounts.models import Role, User
from tests.api_base import assert_problem

PASSWORD = "s3cure-Passw0rd!"
pytestmark = pytest.mark.django_db


def login(client, username, password=PASSWORD):
    return client.post("/api/v1/auth/login", {"username": username, "password": password}, format="json")


def test_login_with_username_or_email_returns_tokens_and_user(api_client, developer):
    for identifier in (developer.username, developer.email.upper()):
        response = login(api_client, identifier)
        assert response.status_code == 200, response.json()
        body = response.json()
        assert body["access"] and body["refresh"]
        assert body["user"]["username"] == developer.username
        assert body["user"]["role"] == "developer"
        assert "password" not in body["user"]


def test_login_wrong_password_is_401_in_error_shape(api_client, developer):
    assert_problem(login(api_client, developer.username, "nope"), 401)


def test_login_missing_field_is_400_naming_it(api_client):
    assert_problem(api_client.post("/api/v1/auth/login", {"username": "x"}, format="json"), 400, "password")


def test_access_token_authenticates_me(api_client, developer):
    access = login(api_client, developer.username).json()["access"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    response = api_client.get("/api/v1/auth/me")
    assert response.status_code == 200
    assert response.json()["email"] == developer.email


def test_me_requires_authentication(api_client):
    assert_problem(api_client.get("/api/v1/auth/me"), 401)


def test_refresh_rotates_and_blacklists_the_used_token(api_client, developer):
    refresh = login(api_client, developer.username).json()["refresh"]
    response = api_client.post("/api/v1/auth/refresh", {"refresh": refresh}, format="json")
    assert response.status_code == 200, response.json()
    rotated = response.json()["refresh"]
    assert rotated != refresh and response.json()["access"]
    # the used refresh token is dead; the new one works
    assert_problem(api_client.post("/api/v1/auth/refresh", {"refresh": refresh}, format="json"), 401)
    assert api_client.post("/api/v1/auth/refresh", {"refresh": rotated}, format="json").status_code == 200


def test_logout_blacklists_refresh_token(api_client, developer):
    refresh = login(api_client, developer.username).json()["refresh"]
    assert api_client.post("/api/v1/auth/logout", {"refresh": refresh}, format="json").status_code == 204
    assert_problem(api_client.post("/api/v1/auth/refresh", {"refresh": refresh}, format="json"), 401)


def test_logout_with_garbage_token_is_401(api_client):
    assert_problem(api_client.post("/api/v1/auth/logout", {"refresh": "garbage"}, format="json"), 401)


def test_inactive_user_rejected_at_login_refresh_and_every_request(api_client, developer):
    tokens = login(api_client, developer.username).json()
    developer.is_active = False
    developer.save()
    assert_problem(login(api_client, developer.username), 401)
    assert_problem(
        api_client.post("/api/v1/auth/refresh", {"refresh": tokens["refresh"]}, format="json"), 401
    )
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert_problem(api_client.get("/api/v1/auth/me"), 401)


def test_refresh_for_deleted_user_is_401_not_500(api_client, make_user):
    user = make_user(Role.USER)
    refresh = login(api_client, user.username).json()["refresh"]
    user.delete()
    assert_problem(api_client.post("/api/v1/auth/refresh", {"refresh": refresh}, format="json"), 401)


def test_register_creates_user_role_and_returns_tokens(api_client):
    payload = {"username": "newbie", "email": "Newbie@Example.com", "password": PASSWORD}
    response = api_client.post("/api/v1/auth/register", payload, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["user"]["role"] == "user"
    user = User.objects.get(username="newbie")
    assert user.role == Role.USER and user.email == "newbie@example.com"
    assert list(user.groups.values_list("name", flat=True)) == ["user"]
    assert login(api_client, "newbie").status_code == 200


def test_register_cannot_choose_a_role(api_client):
    payload = {"username": "sneaky", "email": "s@example.com", "password": PASSWORD, "role": "admin"}
    # `role` is not a field of the registration body: refused, never silently dropped.
    assert_problem(api_client.post("/api/v1/auth/register", payload, format="json"), 400, "role")
    assert not User.objects.filter(username="sneaky").exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"username": "abc1", "email": "a@example.com", "password": "123"}, "password"),
        ({"username": "weakpw", "email": "w@example.com", "password": "password"}, "password"),
        ({"username": "bademail", "email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "x@example.com", "password": PASSWORD}, "username"),
    ],
)
def test_register_validation_names_the_field(api_client, payload, field):
    assert_problem(api_client.post("/api/v1/auth/register", payload, format="json"), 400, field)
    assert not User.objects.filter(email=payload["email"]).exists()


def test_register_duplicate_username_and_email(api_client, developer):
    dup_user = {"username": developer.username.upper(), "email": "other@example.com", "password": PASSWORD}
    assert_problem(api_client.post("/api/v1/auth/register", dup_user, format="json"), 400, "username")
    dup_email = {"username": "fresh", "email": developer.email, "password": PASSWORD}
    assert_problem(api_client.post("/api/v1/auth/register", dup_email, format="json"), 400, "email")


def test_register_can_be_switched_off(api_client, settings):
    settings.REGISTRATION_OPEN = False
    payload = {"username": "closed", "email": "c@example.com", "password": PASSWORD}
    assert_problem(api_client.post("/api/v1/auth/register", payload, format="json"), 404)
    assert not User.objects.filter(username="closed").exists()


def test_login_and_register_are_throttled_per_client_address(api_client, developer, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "auth": "3/minute"},
    }
    for _ in range(3):
        assert login(api_client, developer.username, "wrong").status_code == 401
    response = login(api_client, developer.username)
    assert_problem(response, 429)
    assert "Retry-After" in response
    # another client address is not affected
    other = api_client.post(
        "/api/v1/auth/login",
        {"username": developer.username, "password": PASSWORD},
        format="json",
        REMOTE_ADDR="10.1.2.3",
    )
    assert other.status_code == 200


def test_role_groups_exist_with_model_permissions():
    groups = {g.name: g for g in Group.objects.filter(name__in=["admin", "developer", "user"])}
    assert set(groups) == {"admin", "developer", "user"}
    dev_perms = set(groups["developer"].permissions.values_list("codename", flat=True))
    user_perms = set(groups["user"].permissions.values_list("codename", flat=True))
    assert {"add_widget", "change_widget", "use_widget"} <= dev_perms
    assert "view_widget" in user_perms and "add_widget" not in user_perms


def test_changing_role_moves_user_between_groups(make_user):
    user = make_user(Role.USER)
    user.role = Role.DEVELOPER
    user.save()
    assert list(user.groups.values_list("name", flat=True)) == ["developer"]
    assert user.has_perm("testapp.add_widget")
