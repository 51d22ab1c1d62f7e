"""Maintenance mode: writes under /api/ answer 503 (code maintenance_mode, Retry-After) while
reads keep working; signing in, the system area, health and the admin site stay open."""

import pytest
from django.test import Client

from agentmesh.accounts.models import Role
from tests.api_base import assert_problem
from tools.models import Tool

pytestmark = pytest.mark.django_db
CONFIG = "/api/v1/system/config"


def maintenance(client, on: bool, **extra):
    response = client.put(CONFIG, {"values": {"MAINTENANCE_MODE": on, **extra}}, format="json")
    assert response.status_code == 200, response.json()


def test_writes_answer_503_and_reads_keep_working(admin_user, developer, client_for):
    admin, client = client_for(admin_user), client_for(developer)
    tool = client.post(
        "/api/v1/tools",
        {"name": "calc", "type": "builtin", "config": {"function": "calculator"}},
        format="json",
    ).json()
    maintenance(
        admin, True, MAINTENANCE_MESSAGE="Upgrading the database.", MAINTENANCE_RETRY_AFTER_SECONDS=120
    )

    for response in (
        client.post("/api/v1/tools", {"name": "x", "type": "builtin", "config": {}}, format="json"),
        client.patch(f"/api/v1/tools/{tool['id']}", {"description": "new"}, format="json"),
        client.put(f"/api/v1/tools/{tool['id']}", {"name": "y"}, format="json"),
        client.delete(f"/api/v1/tools/{tool['id']}"),
        admin.post("/api/v1/observability/alerts", {"title": "x"}, format="json"),  # admins too
    ):
        body = assert_problem(response, 503)
        assert body["errors"][0]["code"] == "maintenance_mode"
        assert "Upgrading the database." in body["detail"]
        assert response["Retry-After"] == "120"
    assert Tool.objects.get().description == "" and Tool.objects.count() == 1

    assert client.get("/api/v1/tools").status_code == 200
    assert client.get(f"/api/v1/tools/{tool['id']}").status_code == 200
    assert client.get("/api/v1/system/health").status_code == 200

    maintenance(admin, False)  # PUT /system/config itself stays open
    response = client.patch(f"/api/v1/tools/{tool['id']}", {"description": "new"}, format="json")
    assert response.status_code == 200, response.json()


def test_login_and_refresh_stay_open_so_an_admin_can_switch_it_off(make_user, client_for, api_client):
    admin_user = make_user(Role.ADMIN)
    maintenance(client_for(admin_user), True)
    login = api_client.post(
        "/api/v1/auth/login", {"username": admin_user.username, "password": "s3cure-Passw0rd!"}, format="json"
    )
    assert login.status_code == 200, login.json()
    tokens = login.json()
    refreshed = api_client.post("/api/v1/auth/refresh", {"refresh": tokens["refresh"]}, format="json")
    assert refreshed.status_code == 200, refreshed.json()
    body = {"username": "newbie", "email": "newbie@example.com", "password": "s3cure-Passw0rd!"}
    assert_problem(api_client.post("/api/v1/auth/register", body, format="json"), 503)

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {refreshed.json()['access']}")
    response = api_client.put(CONFIG, {"values": {"MAINTENANCE_MODE": False}}, format="json")
    assert response.status_code == 200, response.json()
    assert api_client.post("/api/v1/auth/register", body, format="json").status_code == 201


def test_the_admin_site_keeps_working(make_user, client_for, developer):
    staff = Client()
    admin_user = make_user(Role.ADMIN, is_staff=True, is_superuser=True)
    staff.force_login(admin_user)
    maintenance(client_for(admin_user), True)
    assert staff.get("/admin/").status_code == 200
    response = staff.post(
        "/admin/auth/group/add/", {"name": "during-maintenance", "permissions": []}, follow=False
    )
    assert response.status_code == 302
    from django.contrib.auth.models import Group

    assert Group.objects.filter(name="during-maintenance").exists()


def test_the_503_is_documented_on_writes(admin_user, client_for):
    schema = client_for(admin_user).get("/api/schema/?format=json").json()
    assert "503" in schema["paths"]["/api/v1/tools"]["post"]["responses"]
    assert "503" in schema["paths"]["/api/v1/tools/{id}"]["delete"]["responses"]
    assert "503" not in schema["paths"]["/api/v1/tools"]["get"]["responses"]
