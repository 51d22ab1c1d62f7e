"""Every write is audited where it happens: API, share/revoke, admin, commands, tasks, shell."""

import json

import pytest
from celery import shared_task
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from agentmesh.accounts.models import Role, User
from agentmesh.core.audit import audit_context
from agentmesh.core.sharing import object_share
from agentmesh.core.signals import MASK, mask_sensitive
from masterdata import services as masterdata_services
from masterdata.models import ModelConfig, Secret, Skill
from observability.models import ObservabilityEvent
from tools.models import Tool

pytestmark = pytest.mark.django_db

SKILLS = "/api/v1/master-data/skills"
SECRET_VALUE = "sk-live-AUDIT-NEVER-SHOWS-42"


def audit_events(**filters):
    return list(ObservabilityEvent.objects.filter(type__startswith="audit.", **filters).order_by("timestamp"))


def only_event(**filters) -> ObservabilityEvent:
    events = audit_events(**filters)
    assert len(events) == 1, [(e.type, e.resource_type, e.payload) for e in events]
    return events[0]


def never_contains(event: ObservabilityEvent, text: str) -> None:
    assert text not in json.dumps(event.payload, default=str)
    assert text not in event.message


@pytest.fixture
def admin_client(client, make_user):
    admin = make_user(Role.ADMIN, is_staff=True, is_superuser=True)
    client.force_login(admin)
    client.admin = admin
    return client


# --- API --------------------------------------------------------------------------------------
def test_api_create_update_delete_record_exactly_one_event_each(client_for, developer):
    client = client_for(developer)
    response = client.post(SKILLS, {"name": "Summarize", "category": "text"}, format="json")
    assert response.status_code == 201, response.json()
    sid = response.json()["id"]
    created = only_event(resource_id=sid)
    assert created.type == "audit.create"
    assert created.actor_id == developer.pk
    assert created.resource_type == "masterdata.skill"
    assert created.payload["channel"] == "api"
    assert created.payload["repr"] == "Summarize"
    assert {"name", "category", "slug"} <= set(created.payload["changed_fields"])

    assert client.patch(f"{SKILLS}/{sid}", {"category": "writing"}, format="json").status_code == 200
    updated = only_event(resource_id=sid, type="audit.update")
    assert updated.payload["changed_fields"] == ["category"]
    assert updated.payload["changes"] == {"category": "writing"}
    assert updated.payload["channel"] == "api" and updated.actor_id == developer.pk

    assert client.delete(f"{SKILLS}/{sid}").status_code == 204
    deleted = only_event(resource_id=sid, type="audit.delete")
    assert deleted.payload["channel"] == "api" and deleted.actor_id == developer.pk
    assert deleted.payload["repr"] == "Summarize"
    assert len(audit_events(resource_id=sid)) == 3


def test_plain_model_viewset_writes_are_audited_once(client_for, developer):
    client = client_for(developer)
    rule = {"name": "errors", "metric": "http_errors", "threshold": 5}
    response = client.post("/api/v1/observability/alert-rules", rule, format="json")
    assert response.status_code == 201, response.json()
    rid = response.json()["id"]
    assert (
        client.patch(f"/api/v1/observability/alert-rules/{rid}", {"threshold": 9}, format="json").status_code
        == 200
    )
    assert client.delete(f"/api/v1/observability/alert-rules/{rid}").status_code == 204
    assert [e.type for e in audit_events(resource_id=rid)] == ["audit.create", "audit.update", "audit.delete"]
    assert only_event(resource_id=rid, type="audit.update").payload["changes"] == {"threshold": 9.0}


def test_tool_validate_and_deploy_are_audited(client_for, developer):
    client = client_for(developer)
    response = client.post(
        "/api/v1/tools",
        {"name": "calc", "type": "builtin", "config": {"function": "calculator"}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    tid = response.json()["id"]
    assert client.post(f"/api/v1/tools/{tid}/validate").json()["valid"] is True
    assert client.post(f"/api/v1/tools/{tid}/deploy").status_code == 200
    deploy = only_event(resource_id=tid, type="audit.deploy")
    assert deploy.actor_id == developer.pk and deploy.payload["channel"] == "api"
    assert deploy.payload["changes"]["status"] == "deployed"
    assert "deployed_at" in deploy.payload["changed_fields"]
    assert only_event(resource_id=tid, type="audit.validate").payload["changes"]["status"] == "validated"
    assert client.post(f"/api/v1/tools/{tid}/undeploy").status_code == 200
    assert only_event(resource_id=tid, type="audit.undeploy").payload["changes"] == {"status": "disabled"}


def test_secret_and_model_config_api_key_never_appear(client_for, developer):
    client = client_for(developer)
    response = client.post(
        "/api/v1/master-data/secrets", {"name": "openai", "value": SECRET_VALUE}, format="json"
    )
    assert response.status_code == 201, response.json()
    sid = response.json()["id"]
    rotated = SECRET_VALUE + "-rotated"
    assert (
        client.patch(f"/api/v1/master-data/secrets/{sid}", {"value": rotated}, format="json").status_code
        == 200
    )
    response = client.post(
        "/api/v1/master-data/models",
        {"name": "gpt", "provider": "openai", "model_name": "gpt-4o", "api_key_secret": sid},
        format="json",
    )
    assert response.status_code == 201, response.json()
    config = only_event(resource_id=response.json()["id"])
    assert config.payload["changes"]["api_key_secret_id"] == MASK
    update = only_event(resource_id=sid, type="audit.update")
    assert update.payload["changed_fields"] == sorted(["encrypted_value", "fingerprint", "mask"])
    assert update.payload["changes"]["encrypted_value"] == MASK
    secret = Secret.objects.get(pk=sid)
    for event in audit_events():
        never_contains(event, SECRET_VALUE)
        never_contains(event, rotated)
        never_contains(event, secret.encrypted_value)


def test_nested_sensitive_keys_are_masked():
    masked = mask_sensitive(
        Tool,
        {
            "config": {"url": "https://x", "headers": {"Authorization": "Bearer t0k"}, "api_key": "k"},
            "items": [{"password": "p"}],
        },
    )
    assert masked == {
        "config": {"url": "https://x", "headers": {"Authorization": MASK}, "api_key": MASK},
        "items": [{"password": MASK}],
    }


# --- share / revoke ------------------------------------------------------------------------------
def test_share_and_revoke_are_audited(client_for, developer, other_developer):
    client = client_for(developer)
    sid = client.post(SKILLS, {"name": "Shared"}, format="json").json()["id"]
    url = f"{SKILLS}/{sid}/share"
    response = client.post(url, {"users": [other_developer.username], "actions": ["use"]}, format="json")
    assert response.status_code == 200, response.json()
    share = only_event(resource_id=sid, type="audit.share")
    assert share.actor_id == developer.pk
    assert share.payload["channel"] == "api"
    assert share.payload["actions"] == ["use", "view"]
    assert share.payload["users"] == [{"id": other_developer.pk, "username": other_developer.username}]
    assert share.payload["groups"] == []

    payload = {"users": [other_developer.username], "actions": ["view"], "revoke": True}
    assert client.post(url, payload, format="json").status_code == 200
    revoke = only_event(resource_id=sid, type="audit.revoke")
    assert revoke.payload["actions"] == ["change", "use", "view"]
    assert revoke.payload["users"][0]["id"] == other_developer.pk


def test_share_from_the_shell_is_audited_as_system(developer, other_developer):
    skill = masterdata_services.skill_create(owner=developer, name="From shell")
    object_share(obj=skill, users=[other_developer], actions=["view"])
    event = only_event(resource_id=str(skill.pk), type="audit.share")
    assert event.payload["channel"] == "system" and event.actor_id is None
    assert only_event(resource_id=str(skill.pk), type="audit.create").payload["channel"] == "system"


# --- admin -----------------------------------------------------------------------------------------
def skill_form(skill: Skill, **changes) -> dict:
    data = {
        "owner": skill.owner_id,
        "name": skill.name,
        "slug": skill.slug,
        "category": skill.category,
        "type": skill.type,
        "description": skill.description,
        "tags": json.dumps(skill.tags),
        "input_schema": "null",
        "output_schema": "null",
        "is_active": "on",
        "_save": "Save",
    }
    data.update(changes)
    return data


def test_admin_change_form_records_the_changed_fields(admin_client, developer):
    skill = masterdata_services.skill_create(owner=developer, name="Translate", category="text")
    response = admin_client.post(
        f"/admin/masterdata/skill/{skill.pk}/change/",
        skill_form(skill, category="language", description="From the admin"),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    skill.refresh_from_db()
    assert skill.category == "language"
    event = only_event(resource_id=str(skill.pk), type="audit.update")
    assert event.payload["channel"] == "admin"
    assert event.actor_id == admin_client.admin.pk
    assert event.payload["changed_fields"] == ["category", "description"]
    assert event.payload["changes"]["description"] == "From the admin"


def test_admin_delete_and_bulk_delete_are_audited(admin_client, developer):
    one = masterdata_services.skill_create(owner=developer, name="One")
    two = masterdata_services.skill_create(owner=developer, name="Two")
    three = masterdata_services.skill_create(owner=developer, name="Three")
    response = admin_client.post(f"/admin/masterdata/skill/{one.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    response = admin_client.post(
        "/admin/masterdata/skill/",
        {"action": "delete_selected", "_selected_action": [two.pk, three.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not Skill.objects.filter(pk__in=[one.pk, two.pk, three.pk]).exists()
    for skill in (one, two, three):
        event = only_event(resource_id=str(skill.pk), type="audit.delete")
        assert event.payload["channel"] == "admin" and event.actor_id == admin_client.admin.pk


def test_admin_action_deploy_is_audited_through_the_service(admin_client, developer):
    from tools import services as tool_services

    tool = tool_services.tool_create(
        owner=developer, name="calc", type="builtin", config={"function": "calculator"}
    )
    tool_services.tool_validate(tool=tool, actor=developer)
    response = admin_client.post(
        "/admin/tools/tool/", {"action": "deploy_tools", "_selected_action": [tool.pk]}
    )
    assert response.status_code == 302
    event = only_event(resource_id=str(tool.pk), type="audit.deploy")
    assert event.payload["channel"] == "admin" and event.actor_id == admin_client.admin.pk


def user_form(user: User, **changes) -> dict:
    joined = timezone.localtime(user.date_joined)
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": "on",
        "date_joined_0": joined.strftime("%Y-%m-%d"),
        "date_joined_1": joined.strftime("%H:%M:%S"),
        "role": user.role,
        "_save": "Save",
    }
    data.update(changes)
    return data


def test_admin_role_change_and_password_change_are_audited_without_the_password(admin_client, developer):
    response = admin_client.post(
        f"/admin/accounts/user/{developer.pk}/change/", user_form(developer, role=Role.USER)
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    event = only_event(resource_id=str(developer.pk), type="audit.update")
    assert event.payload["channel"] == "admin" and event.actor_id == admin_client.admin.pk
    assert "role" in event.payload["changed_fields"]
    assert event.payload["changes"]["role"] == Role.USER

    new_password = "N3w-Very-Secret-Passw0rd!"
    response = admin_client.post(
        f"/admin/accounts/user/{developer.pk}/password/",
        {"password1": new_password, "password2": new_password, "usable_password": "true"},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    events = audit_events(resource_id=str(developer.pk), type="audit.update")
    assert len(events) == 2
    assert events[1].payload["changed_fields"] == ["password"]
    assert events[1].payload["changes"] == {"password": MASK}
    developer.refresh_from_db()
    for event in audit_events():
        never_contains(event, new_password)
        never_contains(event, developer.password)


# --- management commands, tasks, transactions ------------------------------------------------
def test_management_command_writes_are_audited_through_command(make_user):
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    events = audit_events()
    assert events
    assert {e.payload["channel"] for e in events} == {"command"}
    assert {e.actor_id for e in events} == {None}
    types = {(e.type, e.resource_type) for e in events}
    assert ("audit.create", "accounts.user") in types
    assert ("audit.create", "masterdata.modelconfig") in types
    assert ("audit.deploy", "tools.tool") in types
    assert ("audit.deploy", "agents.agent") in types
    for event in events:  # the demo passwords are never recorded
        never_contains(event, "agentmesh-developer")


def test_management_command_with_actor(admin_user, developer):
    masterdata_services.secret_create(owner=developer, name="k", value=SECRET_VALUE)
    call_command("rotate_secret_keys", actor=admin_user.username, stdout=open("/dev/null", "w"))  # noqa: SIM115
    event = only_event(type="audit.rotate_keys")
    assert event.actor_id == admin_user.pk
    assert event.payload["channel"] == "command" and event.payload["count"] == 1
    assert event.resource_type == "masterdata.secret" and event.resource_id == ""


@shared_task(name="tests.audit.create_skill")
def create_skill_task(owner_id: int, name: str) -> str:
    owner = User.objects.get(pk=owner_id)
    return str(masterdata_services.prompt_create(owner=owner, name=name, template="Hi", actor=owner).pk)


def test_task_writes_are_audited_through_task(developer):
    prompt_id = create_skill_task.delay(developer.pk, "from a task").get()
    event = only_event(resource_id=prompt_id)
    assert event.payload["channel"] == "task"
    assert event.actor_id == developer.pk  # the service's actor: nobody started the task


def test_rolled_back_write_leaves_no_audit_event(developer):
    with pytest.raises(RuntimeError), transaction.atomic():
        masterdata_services.skill_create(owner=developer, name="Rolled back")
        assert len(audit_events()) == 1
        raise RuntimeError("abort")
    assert not Skill.objects.filter(name="Rolled back").exists()
    assert audit_events() == []


def test_admin_dry_run_of_the_service_leaves_no_extra_event(admin_client, developer):
    response = admin_client.post(
        "/admin/masterdata/modelconfig/add/",
        {
            "owner": developer.pk,
            "name": "echo",
            "provider": "echo",
            "default_parameters": "{}",
            "input_price_per_million": "0",
            "output_price_per_million": "0",
            "is_active": "on",
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    config = ModelConfig.objects.get(name="echo")
    event = only_event(resource_id=str(config.pk))
    assert event.type == "audit.create" and event.payload["channel"] == "admin"


def test_audit_context_names_actor_and_channel(developer):
    with audit_context(channel="command", actor=developer):
        skill = masterdata_services.skill_create(owner=developer, name="ctx")
    event = only_event(resource_id=str(skill.pk))
    assert event.actor_id == developer.pk and event.payload["channel"] == "command"


def test_audit_events_are_listed_by_the_events_api(client_for, admin_user, developer):
    masterdata_services.skill_create(owner=developer, name="listed")
    response = client_for(admin_user).get("/api/v1/observability/events", {"type": "audit.create"})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["payload"]["repr"] for r in results] == ["listed"]
