"""Export and import: the exchange format, round trips, conflicts, and hostile documents."""

import json

import pytest
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from agents.models import Agent
from templates_app import services
from templates_app.models import Template
from tests.agents.factories import make_model
from tests.api_base import assert_problem
from tools.models import Tool
from workflows.models import Workflow

URL = "/api/v1/templates"


def _two_versions(owner, bundle_payload):
    template = services.template_create(owner=owner, **bundle_payload)
    body = json.loads(json.dumps(bundle_payload["body"]))
    body["resources"][1]["spec"]["description"] = "second"
    services.template_version_create(template=template, actor=owner, body=body, changelog="described")
    return template


def _resources(owner) -> list:
    """What instantiating made for `owner`, without ids and owners."""
    agent = Agent.objects.get(owner=owner)
    tool = Tool.objects.get(owner=owner)
    flow = Workflow.objects.get(owner=owner)
    node = dict(
        flow.definition["nodes"][0], config={**flow.definition["nodes"][0]["config"], "agent_id": "-"}
    )
    return [
        (tool.name, tool.type, tool.config),
        (
            agent.name,
            agent.description,
            agent.system_prompt,
            agent.parameters,
            [t.name for t in agent.tools.all()],
        ),
        (flow.name, [node]),
    ]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_export_import_round_trip_is_identical_and_instantiates_the_same(
    client_for, developer, other_developer, bundle_payload, fmt
):
    template = _two_versions(developer, bundle_payload)
    owner = client_for(developer)
    response = owner.get(f"{URL}/{template.pk}/export", {"format": fmt})
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="Calc-bundle.{fmt}"'
    exported = response.content
    document = yaml.safe_load(exported) if fmt == "yaml" else json.loads(exported)
    assert document["apiVersion"] == "agentmesh/v1" and document["kind"] == "Template"
    assert [v["number"] for v in document["versions"]] == [1, 2]

    make_model(other_developer, name="echo-shared")
    other = client_for(other_developer)
    if fmt == "yaml":
        imported = other.post(f"{URL}/import", exported, content_type="application/yaml")
    else:
        imported = other.post(f"{URL}/import", exported, content_type="application/json")
    assert imported.status_code == 201, imported.json()
    copy_id = imported.json()["id"]
    again = other.get(f"{URL}/{copy_id}/export", {"format": fmt}).content
    assert again == exported

    params = {"params": {"topic": "x"}}
    assert owner.post(f"{URL}/{template.pk}/instantiate", params, format="json").status_code == 201
    assert other.post(f"{URL}/{copy_id}/instantiate", params, format="json").status_code == 201
    assert _resources(developer) == _resources(other_developer)


def test_export_of_one_version_and_multipart_import(client_for, developer, bundle_payload):
    template = _two_versions(developer, bundle_payload)
    client = client_for(developer)
    exported = client.get(f"{URL}/{template.pk}/export", {"version": 1}).content
    assert [v["number"] for v in yaml.safe_load(exported)["versions"]] == [1]
    upload = SimpleUploadedFile("t.yaml", exported, content_type="application/yaml")
    # The name is taken: 409, unless renamed or added as new versions.
    assert_problem(client.post(f"{URL}/import", {"file": upload}, format="multipart"), 409)
    upload.seek(0)
    renamed = client.post(f"{URL}/import?on_conflict=rename", {"file": upload}, format="multipart")
    assert renamed.status_code == 201, renamed.json()
    assert renamed.json()["name"] == "Calc bundle (2)"


def test_import_new_version_adds_only_what_differs(client_for, developer, bundle_payload):
    template = services.template_create(owner=developer, **bundle_payload)
    other = _two_versions(developer, {**bundle_payload, "name": "Other"})
    client = client_for(developer)
    document = yaml.safe_load(client.get(f"{URL}/{other.pk}/export").content)
    document["metadata"]["name"] = template.name
    response = client.post(f"{URL}/import?on_conflict=new_version", document, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["latest_version"]["number"] == 2
    assert template.versions.count() == 2
    again = client.post(f"{URL}/import?on_conflict=new_version", document, format="json")
    assert_problem(again, 409)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(apiVersion="v0"), "apiVersion"),
        (lambda d: d["metadata"].update(kind="robot"), "metadata.kind"),
        (lambda d: d["versions"][0].update(extra=1), "versions[0].extra"),
        (
            lambda d: d["versions"][0]["body"]["resources"][0].update(kind="robot"),
            "versions[0].body.resources[0].kind",
        ),
        (
            lambda d: d["versions"][1]["body"]["resources"][0]["spec"].update(type="nope"),
            "versions[1].body.resources.calc.type",
        ),
    ],
)
def test_import_names_the_path_of_the_bad_field(client_for, developer, bundle_payload, mutate, field):
    template = _two_versions(developer, bundle_payload)
    client = client_for(developer)
    document = json.loads(client.get(f"{URL}/{template.pk}/export", {"format": "json"}).content)
    template.delete()
    mutate(document)
    assert_problem(client.post(f"{URL}/import", document, format="json"), 400, field)
    assert Template.objects.count() == 0


BILLION_LAUGHS = b"""
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_a_yaml_bomb_is_a_400(client_for, developer):
    client = client_for(developer)
    response = client.post(f"{URL}/import", BILLION_LAUGHS, content_type="application/yaml")
    body = assert_problem(response, 400, "file")
    assert "bomb" in body["errors"][0]["message"]
    upload = SimpleUploadedFile("bomb.yaml", BILLION_LAUGHS)
    assert_problem(client.post(f"{URL}/import", {"file": upload}, format="multipart"), 400, "file")


def test_few_aliases_expanding_wide_are_refused_too(client_for, developer):
    # 3 aliases only, each doubling: the expansion count catches it, not the alias count.
    with override_settings(TEMPLATES_IMPORT_MAX_ALIASES=1000, TEMPLATES_IMPORT_MAX_NODES=50):
        doc = b"a: &a [1,2,3,4,5,6,7,8,9,10]\nb: &b [*a,*a,*a]\nc: [*b,*b,*b]\n"
        response = client_for(developer).post(f"{URL}/import", doc, content_type="application/yaml")
        assert_problem(response, 400, "file")


def test_unsafe_yaml_tags_are_refused(client_for, developer):
    doc = b"!!python/object/apply:os.system ['echo pwned']\n"
    response = client_for(developer).post(f"{URL}/import", doc, content_type="application/yaml")
    assert_problem(response, 400, "file")


@override_settings(TEMPLATES_IMPORT_MAX_BYTES=2048)
@pytest.mark.parametrize("how", ["yaml", "json", "multipart"])
def test_an_oversized_document_is_refused(client_for, developer, how):
    client = client_for(developer)
    big = {"apiVersion": "agentmesh/v1", "kind": "Template", "metadata": {"name": "x" * 3000, "kind": "tool"}}
    raw = json.dumps(big).encode()
    if how == "multipart":
        response = client.post(
            f"{URL}/import", {"file": SimpleUploadedFile("t.json", raw)}, format="multipart"
        )
    else:
        response = client.post(f"{URL}/import", raw, content_type=f"application/{how}")
    body = assert_problem(response, 400, "file")
    assert "2048 bytes" in body["errors"][0]["message"]


def test_export_format_must_be_yaml_or_json(client_for, developer, bundle_payload):
    template = services.template_create(owner=developer, **bundle_payload)
    assert_problem(client_for(developer).get(f"{URL}/{template.pk}/export", {"format": "xml"}), 400, "format")


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (
            b'apiVersion: agentmesh/v1\nkind: Template\nmetadata: {name: "a\\0b", kind: tool}\n',
            "metadata.name",
        ),
        (
            b"apiVersion: agentmesh/v1\nkind: Template\nmetadata: {name: a, kind: tool}\nx: !!binary aGk=\n",
            "x",
        ),
        (b"apiVersion: agentmesh/v1\nkind: Template\nmetadata: {name: a, kind: tool}\nx: !!set {a}\n", "x"),
        (b"apiVersion: agentmesh/v1\nkind: Template\nmetadata: {name: a, kind: tool}\nx: .inf\n", "x"),
        (b"apiVersion: agentmesh/v1\nkind: Template\nmetadata: {name: a, kind: tool}\n1: one\n", "file"),
    ],
)
def test_yaml_that_json_cannot_hold_is_a_400(client_for, developer, doc, field):
    response = client_for(developer).post(f"{URL}/import", doc, content_type="application/yaml")
    assert_problem(response, 400, field)


def test_yaml_dates_stay_strings(developer):
    from templates_app.blueprint import parse_document

    assert parse_document(b"changelog: 2026-12-06\n") == {"changelog": "2026-12-06"}
