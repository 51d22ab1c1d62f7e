"""Export / import of a whole setup (POST /integration/export, /import, /import-file)."""

import json

import pytest
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from agents.models import Agent
from agents.services import agent_create
from masterdata.models import Constraint, ModelConfig, Prompt, Secret, Skill
from masterdata.services import (
    constraint_create,
    model_config_create,
    prompt_create,
    prompt_update,
    secret_create,
    skill_create,
)
from observability.models import ObservabilityEvent as Event
from templates_app.models import Template
from templates_app.services import template_create, template_version_create
from tests.api_base import assert_problem
from tools.models import Tool
from tools.services import tool_create
from workflows.models import Workflow
from workflows.services import workflow_create, workflow_update

pytestmark = pytest.mark.django_db

SECRET_VALUE = "sk-live-VERY-secret-4242"
EXPORT = reverse("integration-api:export")
IMPORT = reverse("integration-api:import")
IMPORT_FILE = reverse("integration-api:import-file")


def make_setup(owner):
    secret = secret_create(owner=owner, name="openai-key", value=SECRET_VALUE, description="the key")
    skill = skill_create(owner=owner, name="Summarise", category="text", tags=["nlp"])
    constraint = constraint_create(
        owner=owner, name="Short runs", type="resource_limit", rules={"max_turns": 5}
    )
    prompt = prompt_create(
        owner=owner, name="greeter", template="Hello {{ who }}", variables=[{"name": "who"}]
    )
    prompt_update(prompt=prompt, actor=owner, template="Hi {{ who }}!")
    echo = model_config_create(owner=owner, name="echo", provider="echo")
    model_config_create(
        owner=owner,
        name="gpt",
        provider="openai",
        model_name="gpt-4o-mini",
        api_key_secret=secret,
        fallback=echo,
    )
    tool = tool_create(owner=owner, name="calc", type="builtin", config={"function": "calculator"})
    agent = agent_create(
        owner=owner,
        name="helper",
        model=echo,
        prompt=prompt,
        prompt_variables={"who": "world"},
        tools=[tool],
        skills=[skill],
        constraints=[constraint],
    )
    definition = {
        "nodes": [{"id": "t", "type": "tool", "config": {"tool_id": str(tool.pk), "arguments": {}}}]
    }
    workflow = workflow_create(owner=owner, name="flow", definition=definition)
    definition2 = {
        "nodes": [
            {
                "id": "t",
                "type": "tool",
                "config": {"tool_id": str(tool.pk), "arguments": {"expression": "1+1"}},
            },
            {"id": "a", "type": "agent", "config": {"agent_id": str(agent.pk), "input": "hi"}},
        ],
        "edges": [{"source": "t", "target": "a"}],
    }
    workflow_update(workflow=workflow, definition=definition2)
    make_template(owner)
    return secret


def tool_body(description: str) -> dict:
    spec = {"name": "{{ params.name }}", "type": "builtin", "config": {"function": "calculator"}}
    return {"resources": [{"key": "t", "kind": "tool", "spec": {**spec, "description": description}}]}


def make_template(owner, name="Calculator"):
    template = template_create(
        owner=owner,
        name=name,
        kind="tool",
        category="maths",
        tags=["calc"],
        body=tool_body("first"),
        parameters={"type": "object", "properties": {"name": {"type": "string", "default": "calc"}}},
    )
    template_version_create(template=template, actor=owner, body=tool_body("second"), changelog="v2")
    return template


def strip_volatile(bundle: dict) -> dict:
    bundle = json.loads(json.dumps(bundle))
    bundle.pop("metadata")
    return bundle


def delete_everything(owner):
    Workflow.objects.filter(owner=owner).delete()
    Agent.objects.filter(owner=owner).delete()
    Tool.objects.filter(owner=owner).delete()
    ModelConfig.objects.filter(owner=owner, fallback__isnull=False).delete()
    ModelConfig.objects.filter(owner=owner).delete()
    for model in (Template, Prompt, Constraint, Skill, Secret):
        model.objects.filter(owner=owner).delete()


def test_export_has_every_kind_and_no_secret_value(developer, client_for):
    secret = make_setup(developer)
    for fmt in ("json", "yaml"):
        response = client_for(developer).post(EXPORT, {"format": fmt}, format="json")
        assert response.status_code == 200, response.content
        raw = response.content
        assert SECRET_VALUE.encode() not in raw
        assert secret.encrypted_value.encode() not in raw
        assert secret.fingerprint.encode() not in raw
        bundle = json.loads(raw) if fmt == "json" else yaml.safe_load(raw)
        assert bundle["apiVersion"] == "agentmesh/v1" and bundle["kind"] == "AgentMeshExport"
        assert bundle["secrets"] == [{"name": "openai-key", "description": "the key"}]
        assert [p["version"] for p in bundle["prompts"][0]["versions"]] == [1, 2]
        gpt = next(m for m in bundle["models"] if m["name"] == "gpt")
        assert gpt["api_key_secret"] == {"name": "openai-key"} and gpt["fallback"] == {"name": "echo"}
        agent = bundle["agents"][0]
        assert agent["model"] == {"name": "echo"} and agent["tools"] == [{"name": "calc"}]
        versions = bundle["workflows"][0]["versions"]
        assert [v["version"] for v in versions] == [1, 2]
        node = versions[1]["definition"]["nodes"][1]
        assert node["config"]["agent_id"] == {"$ref": "agents", "name": "helper"}
        assert "id" not in agent and "created_at" not in agent
        (template,) = bundle["templates"]
        assert {k: template[k] for k in ("name", "kind", "category", "tags")} == {
            "name": "Calculator", "kind": "tool", "category": "maths", "tags": ["calc"]
        }  # fmt: skip
        assert [v["number"] for v in template["versions"]] == [1, 2]
        assert template["versions"][1]["body"]["resources"][0]["spec"]["description"] == "second"
        assert template["versions"][1]["changelog"] == "v2" and "id" not in template


def test_export_only_what_the_caller_owns(developer, other_developer, client_for):
    make_setup(other_developer)
    skill_create(owner=developer, name="mine")
    bundle = client_for(developer).post(EXPORT, {}, format="json").json()
    assert [s["name"] for s in bundle["skills"]] == ["mine"]
    assert bundle["agents"] == [] and bundle["secrets"] == [] and bundle["templates"] == []


def test_admin_export_is_the_whole_system_with_owners(developer, admin_user, client_for):
    make_setup(developer)
    bundle = client_for(admin_user).post(EXPORT, {"include": ["skills", "models"]}, format="json").json()
    assert bundle["metadata"]["scope"] == "system"
    assert set(bundle) == {"apiVersion", "kind", "metadata", "skills", "models"}
    assert bundle["skills"][0]["owner"] == developer.username
    templates = client_for(admin_user).post(EXPORT, {"include": ["templates"]}, format="json").json()
    assert set(templates) == {"apiVersion", "kind", "metadata", "templates"}
    assert [(t["owner"], t["name"]) for t in templates["templates"]] == [(developer.username, "Calculator")]
    gpt = next(m for m in bundle["models"] if m["name"] == "gpt")
    assert gpt["fallback"] == {"name": "echo", "owner": developer.username}


def test_round_trip_export_import_export(developer, client_for):
    make_setup(developer)
    client = client_for(developer)
    first = client.post(EXPORT, {}, format="json").json()
    delete_everything(developer)
    assert not Agent.objects.filter(owner=developer).exists()

    response = client.post(IMPORT, {"bundle": first}, format="json")
    assert response.status_code == 200, response.json()
    report = response.json()
    assert report["ok"] and report["written"]
    assert {i["status"] for i in report["items"]} == {"created"}
    secret_item = next(i for i in report["items"] if i["kind"] == "secrets")
    assert "needs_value" in secret_item["notes"][0]
    gpt_item = next(i for i in report["items"] if i["name"] == "gpt")
    assert "inactive" in gpt_item["notes"][0]
    assert ModelConfig.objects.get(owner=developer, name="gpt").is_active is False
    assert Secret.objects.get(owner=developer, name="openai-key").encrypted_value == ""

    # references point at the new objects
    agent = Agent.objects.get(owner=developer, name="helper")
    tool = Tool.objects.get(owner=developer, name="calc")
    assert list(agent.tools.all()) == [tool]
    workflow = Workflow.objects.get(owner=developer, name="flow")
    assert workflow.version == 2
    assert workflow.definition["nodes"][1]["config"]["agent_id"] == str(agent.pk)
    template = Template.objects.get(owner=developer, name="Calculator")
    assert list(template.versions.order_by("number").values_list("number", "changelog")) == [
        (1, ""),
        (2, "v2"),
    ]
    assert template.latest_version.number == 2

    second = client.post(EXPORT, {}, format="json").json()
    expected = strip_volatile(first)
    # an imported model whose secret has no value yet is inactive (named in the report)
    next(m for m in expected["models"] if m["name"] == "gpt")["is_active"] = False
    assert strip_volatile(second) == expected


def test_import_as_another_user(developer, other_developer, client_for):
    make_setup(developer)
    bundle = client_for(developer).post(EXPORT, {}, format="json").json()
    report = client_for(other_developer).post(IMPORT, {"bundle": bundle}, format="json").json()
    assert report["ok"], report
    again = client_for(other_developer).post(EXPORT, {}, format="json").json()
    assert len(again["agents"]) == 1 and again["agents"][0]["tools"] == [{"name": "calc"}]
    assert again["templates"] == bundle["templates"]


def test_import_is_atomic_a_bad_last_item_writes_nothing(developer, client_for):
    make_setup(developer)
    client = client_for(developer)
    bundle = client.post(EXPORT, {}, format="json").json()
    delete_everything(developer)
    bundle["workflows"][-1]["versions"][0]["definition"] = {"nodes": [{"id": "x", "type": "nope"}]}
    events_before = Event.objects.count()
    response = client.post(IMPORT, {"bundle": bundle}, format="json")
    body = assert_problem(response, 400, "workflows[0].versions[0].definition.nodes[0].type")
    report = body["report"]
    assert not report["ok"] and not report["written"]
    bad = [i for i in report["items"] if i["status"] == "error"]
    assert len(bad) == 1 and bad[0]["kind"] == "workflows"
    assert bad[0]["errors"][0]["field"].startswith("workflows[0]")
    for model in (Secret, Skill, Constraint, Prompt, ModelConfig, Tool, Agent, Workflow):
        assert not model.objects.filter(owner=developer).exists(), model
    assert Event.objects.count() == events_before  # no audit event of a rolled-back write


def test_bad_reference_names_its_path(developer, client_for):
    client = client_for(developer)
    bundle = {
        "apiVersion": "agentmesh/v1",
        "kind": "AgentMeshExport",
        "agents": [{"name": "a", "model": {"name": "missing"}}],
    }
    body = assert_problem(client.post(IMPORT, {"bundle": bundle}, format="json"), 400, "agents[0].model")
    assert body["report"]["items"][0]["status"] == "error"


def test_dry_run_writes_nothing(developer, other_developer, client_for):
    make_setup(developer)
    bundle = client_for(developer).post(EXPORT, {}, format="json").json()
    response = client_for(other_developer).post(IMPORT, {"bundle": bundle, "dry_run": True}, format="json")
    report = response.json()
    assert response.status_code == 200 and report["ok"] and not report["written"]
    assert report["counts"]["created"] == len(report["items"])
    assert not Skill.objects.filter(owner=other_developer).exists()


@pytest.mark.parametrize(
    ("mode", "status", "expected_names"),
    [
        ("skip", "skipped", {"Summarise"}),
        ("overwrite", "updated", {"Summarise"}),
        ("rename", "renamed", {"Summarise", "Summarise-2"}),
    ],
)
def test_on_conflict(developer, client_for, mode, status, expected_names):
    skill_create(owner=developer, name="Summarise", description="old")
    bundle = {
        "apiVersion": "agentmesh/v1",
        "kind": "AgentMeshExport",
        "skills": [{"name": "Summarise", "description": "new"}],
    }
    report = client_for(developer).post(IMPORT, {"bundle": bundle, "on_conflict": mode}, format="json").json()
    assert report["items"][0]["status"] == status
    assert set(Skill.objects.filter(owner=developer).values_list("name", flat=True)) == expected_names
    original = Skill.objects.get(owner=developer, name="Summarise")
    assert original.description == ("new" if mode == "overwrite" else "old")


def test_yaml_body_and_file_upload(developer, other_developer, client_for):
    make_setup(developer)
    text = client_for(developer).post(EXPORT, {"format": "yaml"}, format="json").content
    client = client_for(other_developer)
    response = client.post(IMPORT + "?dry_run=true", data=text, content_type="application/yaml")
    assert response.status_code == 200, response.content
    assert response.json()["dry_run"] is True
    upload = SimpleUploadedFile("bundle.yaml", text, content_type="application/yaml")
    response = client.post(IMPORT_FILE, {"file": upload, "on_conflict": "skip"}, format="multipart")
    assert response.status_code == 200, response.content
    assert Agent.objects.filter(owner=other_developer, name="helper").exists()


def test_billion_laughs_and_garbage_are_400(developer, client_for):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, 10):
        prev = chr(ord("a") + n - 1)
        cur = chr(ord("a") + n)
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    bomb = "\n".join(lines).encode()
    client = client_for(developer)
    assert_problem(client.post(IMPORT, data=bomb, content_type="application/yaml"), 400)
    upload = SimpleUploadedFile("b.yaml", bomb)
    assert_problem(client.post(IMPORT_FILE, {"file": upload}, format="multipart"), 400, "file")
    assert_problem(client.post(IMPORT, {"bundle": {"kind": "Other"}}, format="json"), 400, "kind")
    assert_problem(client.post(IMPORT, {"bundle": {}, "extra": 1}, format="json"), 400, "extra")
    # multipart is refused where it is not declared
    upload = SimpleUploadedFile("b.json", b"{}")
    assert client.post(IMPORT, {"file": upload}, format="multipart").status_code == 415


def test_every_imported_object_and_valueless_secret_is_audited(developer, other_developer, client_for):
    make_setup(developer)
    bundle = client_for(developer).post(EXPORT, {}, format="json").json()
    report = client_for(other_developer).post(IMPORT, {"bundle": bundle}, format="json").json()
    ids = {item["id"] for item in report["items"]}
    audited = set(
        Event.objects.filter(type="audit.create", resource_id__in=ids).values_list("resource_id", flat=True)
    )
    assert audited == ids
    secret_event = Event.objects.get(
        type="audit.create", resource_id=next(i["id"] for i in report["items"] if i["kind"] == "secrets")
    )
    assert secret_event.actor == other_developer
    assert SECRET_VALUE not in json.dumps(secret_event.payload)


def test_job_admin_pages_are_read_only(client, make_user, developer):
    from integration.models import IntegrationJob, JobKind

    admin = make_user("admin", is_staff=True, is_superuser=True)
    job = IntegrationJob.objects.create(
        kind=JobKind.SYNC_MASTER_DATA, owner=developer, params={"source": "http://x"}
    )
    client.force_login(admin)
    assert client.get("/admin/integration/integrationjob/").status_code == 200
    page = client.get(f"/admin/integration/integrationjob/{job.pk}/change/")
    assert page.status_code == 200 and b"http://x" in page.content
    assert client.get("/admin/integration/integrationjob/add/").status_code == 403
    assert (
        client.post(f"/admin/integration/integrationjob/{job.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    assert IntegrationJob.objects.filter(pk=job.pk).exists()


def test_a_valueless_imported_secret_shows_it_and_does_not_break_key_rotation(developer, client_for):
    from masterdata.services import secret_keys_rotate, secret_update

    make_setup(developer)
    client = client_for(developer)
    bundle = client.post(EXPORT, {"include": ["secrets"]}, format="json").json()
    delete_everything(developer)
    assert client.post(IMPORT, {"bundle": bundle}, format="json").json()["ok"]
    secret = Secret.objects.get(owner=developer, name="openai-key")
    listed = client.get(reverse("masterdata-api:secret-detail", args=[secret.pk])).json()
    assert listed["mask"] == "(needs value)"
    assert secret_keys_rotate() == 0  # nothing to re-encrypt, and no failure
    secret_update(secret=secret, value="sk-new-value-123456")
    assert secret_keys_rotate() == 1


def test_export_by_get_is_the_same_bundle_as_by_post(developer, client_for):
    make_setup(developer)
    client = client_for(developer)
    posted = client.post(EXPORT, {"include": ["skills", "prompts"]}, format="json").json()
    got = client.get(EXPORT, {"include": ["skills", "prompts"]})
    assert got.status_code == 200, got.content
    strip = lambda bundle: {k: v for k, v in bundle.items() if k != "metadata"}  # noqa: E731
    assert strip(got.json()) == strip(posted) and set(posted) >= {"skills", "prompts"}
    assert "models" not in got.json()
    as_yaml = client.get(EXPORT, {"as": "yaml"})
    assert as_yaml["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.content)["kind"] == "AgentMeshExport"
    assert client.get(EXPORT, {"include": "nope"}).status_code == 400


def test_include_templates_round_trip_and_conflicts(developer, other_developer, client_for):
    make_template(developer)
    bundle = client_for(developer).post(EXPORT, {"include": ["templates"]}, format="json").json()
    assert set(bundle) == {"apiVersion", "kind", "metadata", "templates"}
    client = client_for(other_developer)
    template_create(  # the same version 1 only
        owner=other_developer,
        name="Calculator",
        kind="tool",
        category="maths",
        tags=["calc"],
        body=tool_body("first"),
        parameters=bundle["templates"][0]["versions"][0]["parameters"],
    )

    def run(mode):
        return client.post(IMPORT, {"bundle": bundle, "on_conflict": mode}, format="json").json()

    assert run("skip")["items"][0]["status"] == "skipped"
    report = run("rename")
    assert report["items"][0]["status"] == "renamed" and report["items"][0]["new_name"] == "Calculator-2"
    assert Template.objects.get(owner=other_developer, name="Calculator-2").versions.count() == 2
    report = run("overwrite")  # the differing version is added as a new version
    assert report["items"][0]["status"] == "updated", report
    mine = Template.objects.get(owner=other_developer, name="Calculator")
    assert list(mine.versions.order_by("number").values_list("number", flat=True)) == [1, 2]
    assert mine.latest_version.body == bundle["templates"][0]["versions"][1]["body"]
    assert run("overwrite")["items"][0]["status"] == "updated"  # nothing differs: no new version
    assert mine.versions.count() == 2


def test_a_bad_template_version_names_its_path_and_writes_nothing(developer, client_for):
    make_template(developer)
    client = client_for(developer)
    bundle = client.post(EXPORT, {}, format="json").json()
    delete_everything(developer)
    bundle["templates"][0]["versions"][1]["body"] = {"resources": "nope"}
    response = client.post(IMPORT, {"bundle": bundle}, format="json")
    body = assert_problem(response, 400)
    (bad,) = [i for i in body["report"]["items"] if i["status"] == "error"]
    assert bad["kind"] == "templates" and bad["errors"][0]["field"].startswith("templates[0].versions[1]")
    assert not Template.objects.filter(owner=developer).exists()
