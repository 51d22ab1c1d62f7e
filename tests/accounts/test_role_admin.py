"""The role is the one source of truth for a user's model permissions, whatever path changes it."""

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from agentmesh.accounts.models import Role, User
from agentmesh.accounts.roles import sync_role_memberships
from tests.admin_forms import admin_form_data
from tests.api_base import assert_problem

pytestmark = pytest.mark.django_db
CREATE_URL = "/api/v1/observability/alert-rules"
PAYLOAD = {"name": "errors", "metric": "events", "threshold": 3}


@pytest.fixture
def superuser_client(make_user):
    client = Client()
    client.force_login(make_user(Role.ADMIN, is_staff=True, is_superuser=True))
    return client


def change_role_in_admin(client, user, role) -> None:
    """GET the admin change page and POST its form back as shown, with only the role changed."""
    url = f"/admin/accounts/user/{user.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200
    data = admin_form_data(page.content.decode(), "user_form")
    assert data["role"] == [user.role]
    data["role"] = [role]
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    user.refresh_from_db()
    assert user.role == role


def role_groups(user) -> list[str]:
    return sorted(user.groups.filter(name__in=Role.values).values_list("name", flat=True))


def test_admin_demotion_and_promotion_take_effect(superuser_client, developer, plain_user, client_for):
    team = Group.objects.create(name="team")
    developer.groups.add(team)

    change_role_in_admin(superuser_client, developer, Role.USER)
    change_role_in_admin(superuser_client, plain_user, Role.DEVELOPER)

    assert_problem(
        client_for(User.objects.get(pk=developer.pk)).post(CREATE_URL, PAYLOAD, format="json"), 403
    )
    response = client_for(User.objects.get(pk=plain_user.pk)).post(CREATE_URL, PAYLOAD, format="json")
    assert response.status_code == 201, response.json()
    # The membership follows too, and the other groups the form showed are kept.
    assert role_groups(developer) == ["user"] and developer.groups.filter(name="team").exists()
    assert role_groups(plain_user) == ["developer"]


def test_admin_form_does_not_offer_the_role_groups(superuser_client, developer):
    Group.objects.create(name="reviewers")
    page = superuser_client.get(f"/admin/accounts/user/{developer.pk}/change/")
    offered = {str(group) for group in page.context["adminform"].form.fields["groups"].queryset}
    assert offered == {"reviewers"}


def test_membership_cannot_contradict_the_role(developer, make_user):
    """Shell edits of the groups are undone; even a stale membership grants nothing."""
    user = make_user(Role.USER)
    user.groups.add(Group.objects.get(name="developer"))  # by hand, from the shell
    assert role_groups(user) == ["user"]
    Group.objects.get(name="developer").user_set.add(user)  # from the group's side
    assert role_groups(user) == ["user"]
    assert not User.objects.get(pk=user.pk).has_perm("observability.add_alertrule")

    developer.groups.clear()
    assert role_groups(developer) == ["developer"]
    assert User.objects.get(pk=developer.pk).has_perm("observability.add_alertrule")


def test_bulk_role_update_is_effective_and_membership_follows_after_migrate(developer):
    # A queryset update sends no signal; the permissions follow the role at once...
    User.objects.filter(pk=developer.pk).update(role=Role.USER)
    assert not User.objects.get(pk=developer.pk).has_perm("observability.add_alertrule")
    assert role_groups(developer) == ["developer"]
    # ...and the membership after the next migrate (a data migration's path) or save.
    sync_role_memberships()
    assert role_groups(developer) == ["user"]


def test_an_admin_role_operator_runs_the_console_without_being_superuser(make_user, developer):
    """Role `admin` (staff, not superuser) holds every model permission: history pages, the
    alert pages the dashboard links to and the runtime config page open; a developer's don't."""
    from django.utils import timezone

    from observability.models import Alert

    operator = make_user(Role.ADMIN, is_staff=True)
    assert not operator.is_superuser
    now = timezone.now()
    alert = Alert.objects.create(owner=developer, title="disk low", fired_at=now, last_seen_at=now)
    client = Client()
    client.force_login(operator)
    for url in (
        "/admin/",
        "/admin/workflows/workflowexecution/",
        "/admin/agents/agentrun/",
        f"/admin/observability/alert/{alert.pk}/change/",
        "/admin/constance/config/",
    ):
        assert client.get(url).status_code == 200, url
    assert operator.has_perm("accounts.change_user")

    staff_developer = make_user(Role.DEVELOPER, is_staff=True)
    client.force_login(staff_developer)
    assert client.get("/admin/workflows/workflowexecution/").status_code == 403
    assert not staff_developer.has_perm("accounts.change_user")
