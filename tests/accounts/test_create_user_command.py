"""`manage.py create_user`: accounts with a role for production (not the demo seeding)."""

import io
import json

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError

from agentmesh.accounts.models import Role, User
from observability.models import ObservabilityEvent

pytestmark = pytest.mark.django_db

PASSWORD = "Corr3ct-Horse-Battery-Staple"


def create_user(monkeypatch, *args, stdin: str = PASSWORD + "\n", **options) -> str:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    out = io.StringIO()
    call_command("create_user", *args, stdout=out, stderr=out, **options)
    return out.getvalue()


@pytest.mark.parametrize(("role", "staff"), [(Role.ADMIN, True), (Role.DEVELOPER, False), (Role.USER, False)])
def test_creates_an_account_with_the_role(monkeypatch, role, staff):
    out = create_user(monkeypatch, "ops", email="ops@example.com", role=role, password_stdin=True)
    user = User.objects.get(username="ops")
    assert (user.role, user.email, user.is_staff, user.is_superuser) == (
        role,
        "ops@example.com",
        staff,
        staff,
    )
    assert user.check_password(PASSWORD) and user.is_active
    assert list(user.groups.values_list("name", flat=True)) == [role]
    assert Group.objects.get(name=role).user_set.filter(pk=user.pk).exists()
    assert PASSWORD not in out and "created" in out


def test_the_account_logs_in_through_the_api(monkeypatch, api_client):
    create_user(monkeypatch, "dev", email="dev@example.com", role="developer", password_stdin=True)
    response = api_client.post("/api/v1/auth/login", {"username": "dev", "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.json()
    me = api_client.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    assert me.json()["role"] == "developer"


def test_the_creation_is_audited_through_command_without_the_password(monkeypatch, admin_user):
    create_user(
        monkeypatch,
        "ops",
        email="ops@example.com",
        role="user",
        password_stdin=True,
        actor=admin_user.username,
    )
    user = User.objects.get(username="ops")
    events = ObservabilityEvent.objects.filter(type="audit.create", resource_type="accounts.user")
    event = events.get(resource_id=str(user.pk))
    assert event.payload["channel"] == "command" and event.actor_id == admin_user.pk
    recorded = json.dumps(event.payload, default=str) + event.message
    assert PASSWORD not in recorded and user.password not in recorded


def test_an_existing_username_is_an_error_and_changes_nothing(monkeypatch, developer):
    before = developer.password
    with pytest.raises(CommandError, match="already exists"):
        create_user(
            monkeypatch, developer.username, email="new@example.com", role="admin", password_stdin=True
        )
    developer.refresh_from_db()
    assert (developer.password, developer.role, developer.is_superuser) == (before, "developer", False)


def test_exists_ok_leaves_the_existing_account_alone(monkeypatch, developer):
    before = developer.password
    out = create_user(
        monkeypatch,
        developer.username,
        email="new@example.com",
        role="admin",
        password_stdin=True,
        exists_ok=True,
    )
    assert "already exists" in out
    developer.refresh_from_db()
    assert (developer.password, developer.role, developer.email) == (before, "developer", developer.email)
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    ("stdin", "email", "message"),
    [
        ("short\n", "ops@example.com", "Password refused"),
        ("12345678901234\n", "ops@example.com", "Password refused"),
        ("\n", "ops@example.com", "empty"),
        (PASSWORD + "\n", "not-an-email", "--email"),
    ],
)
def test_bad_input_is_refused_and_creates_nothing(monkeypatch, stdin, email, message):
    with pytest.raises(CommandError, match=message):
        create_user(monkeypatch, "ops", email=email, role="user", password_stdin=True, stdin=stdin)
    assert not User.objects.filter(username="ops").exists()


def test_a_taken_email_is_refused(monkeypatch, developer):
    with pytest.raises(CommandError, match="email"):
        create_user(monkeypatch, "ops", email=developer.email.upper(), role="user", password_stdin=True)
    assert not User.objects.filter(username="ops").exists()


def test_an_unknown_role_is_refused(monkeypatch):
    with pytest.raises(CommandError, match="role"):
        create_user(monkeypatch, "ops", email="ops@example.com", role="owner", password_stdin=True)
    assert not User.objects.filter(username="ops").exists()


def test_without_a_terminal_or_stdin_flag_it_asks_for_password_stdin(monkeypatch):
    with pytest.raises(CommandError, match="--password-stdin"):
        create_user(monkeypatch, "ops", email="ops@example.com", role="user")
    assert not User.objects.filter(username="ops").exists()


def test_the_prompt_asks_twice_and_refuses_a_mismatch(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Terminal())
    answers = iter([PASSWORD, PASSWORD + "x"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    with pytest.raises(CommandError, match="do not match"):
        call_command("create_user", "ops", email="ops@example.com", role="user", stdout=io.StringIO())
    answers = iter([PASSWORD, PASSWORD])
    call_command("create_user", "ops", email="ops@example.com", role="user", stdout=io.StringIO())
    assert User.objects.get(username="ops").check_password(PASSWORD)
