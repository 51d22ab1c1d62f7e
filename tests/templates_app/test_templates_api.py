"""Templates: CRUD and sharing, typed rendering, parameters, preview, instantiate, versions."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import Agent
from observability.models import ObservabilityEvent
from templates_app import blueprint, services
from templates_app.models import Template, TemplateInstance, TemplateVersion
from tests.agents.factories import make_model
from tests.api_base import OwnedResourceAPITests, assert_problem
from tools.models import Tool, ToolStatus
from workflows.models import Workflow

from .conftest import BUNDLE_PARAMETERS

URL = "/api/v1/templates"


def tool_body(name="{{ params.name }}", function="calculator") -> dict:
    return {
        "resources": [
            {
                "key": "t",
                "kind": "tool",
                "spec": {"name": name, "type": "builtin", "config": {"function": function}},
            }
        ]
    }


TOOL_PARAMETERS = {"type": "object", "properties": {"name": {"type": "string", "default": "calc"}}}


def make_tool_template(owner, name="Calculator", **fields):
    return services.template_create(
        owner=owner, name=name, kind="tool", body=tool_body(), parameters=TOOL_PARAMETERS, **fields
    )


class TestTemplateAPI(OwnedResourceAPITests):
    basename = "templates-api:template"
    model = Template
    create_payload = {"name": "Calc", "kind": "tool", "body": tool_body(), "parameters": TOOL_PARAMETERS}
    update_payload = {"name": "Calc renamed", "kind": "tool", "description": "now described"}
    invalid_payload = ({"name": "Calc", "kind": "robot", "body": tool_body()}, "kind")
    compare_fields = ["name", "description"]

    def make_object(self, owner):
        return make_tool_template(owner, name=f"calc-{Template.objects.count()}")


# --- rendering -------------------------------------------------------------------------------
def test_a_whole_expression_keeps_its_type_and_text_stays_text():
    params = {"n": 3, "numbers": [1, "a"], "flag": False, "who": "Ada", "cfg": {"k": 1}}
    spec = {
        "number": "{{ params.n }}",
        "list": "{{ params.numbers }}",
        "flag": "{{params.flag}}",
        "object": "{{ params.cfg }}",
        "text": "Hello {{ params.who }}, you have {{ params.n + 1 }} items",
        "workflow_expression": "{{ inputs.q }} and {{ steps.a.output }}",
        "mixed": "{{ params.who }} asks {{ inputs.q }}",
        "nested": [{"deep": "{{ params.n * 2 }}"}],
    }
    out = blueprint.render(spec, params, "spec")
    assert out["number"] == 3 and isinstance(out["number"], int)
    assert out["list"] == [1, "a"]
    assert out["flag"] is False
    assert out["object"] == {"k": 1}
    assert out["text"] == "Hello Ada, you have 4 items"
    assert out["workflow_expression"] == "{{ inputs.q }} and {{ steps.a.output }}"
    assert out["mixed"] == "Ada asks {{ inputs.q }}"
    assert out["nested"] == [{"deep": 6}]


def test_a_sandbox_violation_in_a_parameter_expression_is_a_400_naming_the_place():
    from agentmesh.core.exceptions import ServiceValidationError

    with pytest.raises(ServiceValidationError) as caught:
        blueprint.render({"a": ["{{ params.x.__class__.__mro__ }}"]}, {"x": 1}, "spec")
    assert "spec.a[0]" in caught.value.detail


# --- create validation -----------------------------------------------------------------------
def test_create_makes_version_one_and_returns_the_parameter_schema(client_for, developer, bundle_payload):
    response = client_for(developer).post(URL, bundle_payload, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["latest_version"]["number"] == 1
    assert body["latest_version"]["parameters"] == BUNDLE_PARAMETERS
    assert len(body["latest_version"]["checksum"]) == 64
    detail = client_for(developer).get(f"{URL}/{body['id']}").json()
    assert detail["latest_version"]["body"] == bundle_payload["body"]
    # The dry run left nothing behind.
    assert not Tool.objects.exists() and not Agent.objects.exists() and not Workflow.objects.exists()


def test_create_refuses_a_broken_workflow_graph_naming_the_node(client_for, developer, bundle_payload):
    bundle_payload["body"]["resources"][2]["spec"]["definition"]["edges"] = [
        {"source": "ask", "target": "nowhere"}
    ]
    body = assert_problem(client_for(developer).post(URL, bundle_payload, format="json"), 400)
    fields = [e["field"] for e in body["errors"]]
    assert any(f.startswith("body.resources.flow.definition.edges[0]") for f in fields), fields


def test_create_refuses_a_bad_node_config_naming_the_node(client_for, developer, bundle_payload):
    node = bundle_payload["body"]["resources"][2]["spec"]["definition"]["nodes"][0]
    node["config"]["surprise"] = 1
    body = assert_problem(client_for(developer).post(URL, bundle_payload, format="json"), 400)
    assert any("definition.nodes[0]" in e["field"] for e in body["errors"]), body


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p["body"]["resources"][0].update(kind="robot"), "body.resources[0].kind"),
        (lambda p: p["body"]["resources"][1].update(key="calc"), "body.resources[1].key"),
        (lambda p: p["body"]["resources"][1]["spec"]["tools"].append({"$ref": "local", "key": "x"}), None),
        (lambda p: p["parameters"]["properties"].pop("topic"), "body.resources[1].spec.system_prompt"),
        (lambda p: p["parameters"]["properties"]["topic"].pop("examples"), "parameters.properties.topic"),
        (lambda p: p.update(kind="agent"), "body.resources"),
    ],
)
def test_create_validates_structure_and_parameters(client_for, developer, bundle_payload, mutate, field):
    mutate(bundle_payload)
    body = assert_problem(client_for(developer).post(URL, bundle_payload, format="json"), 400, field)
    assert body["errors"]


def test_a_secret_id_must_be_a_reference(client_for, developer):
    body = tool_body()
    body["resources"][0]["spec"] = {
        "name": "fetch",
        "type": "http",
        "config": {
            "url": "https://api.example.com/x",
            "auth": {"type": "bearer", "secret_id": "0b6f3c53-5a41-4c36-9a2f-0d7e9c1d2a3b"},
        },
    }
    payload = {"name": "Fetch", "kind": "tool", "body": body}
    assert_problem(
        client_for(developer).post(URL, payload, format="json"),
        400,
        "body.resources[0].spec.config.auth.secret_id",
    )


# --- visibility ------------------------------------------------------------------------------
def test_another_users_template_is_404_and_a_published_one_is_visible_to_all(
    client_for, developer, other_developer, plain_user
):
    template = make_tool_template(developer)
    other = client_for(other_developer)
    assert_problem(other.get(f"{URL}/{template.pk}"), 404)
    assert_problem(other.get(f"{URL}/{template.pk}/preview"), 404)
    assert_problem(other.post(f"{URL}/{template.pk}/instantiate", {}, format="json"), 404)
    assert other.get(URL).json()["count"] == 0

    services.template_set_published(template=template, published=True)
    for user in (other_developer, plain_user):
        client = client_for(user)
        assert [t["id"] for t in client.get(URL).json()["results"]] == [str(template.pk)]
        assert client.get(f"{URL}/{template.pk}").status_code == 200
        assert client.get(f"{URL}/{template.pk}/versions").status_code == 200
        assert client.get(f"{URL}/{template.pk}/export").status_code == 200
    response = other.post(f"{URL}/{template.pk}/instantiate", {"params": {"name": "mine"}}, format="json")
    assert response.status_code == 201, response.json()
    assert Tool.objects.get(name="mine").owner == other_developer
    # Published is read and instantiate only.
    assert_problem(other.put(f"{URL}/{template.pk}", {"name": "x", "kind": "tool"}, format="json"), 403)
    assert_problem(other.delete(f"{URL}/{template.pk}"), 403)
    assert_problem(other.post(f"{URL}/{template.pk}/versions", {"body": tool_body("x")}, format="json"), 403)
    # Archived leaves the catalogue.
    Template.objects.filter(pk=template.pk).update(archived=True)
    assert_problem(other.get(f"{URL}/{template.pk}"), 404)


def test_published_is_not_settable_through_the_api(client_for, developer):
    template = make_tool_template(developer)
    response = client_for(developer).put(
        f"{URL}/{template.pk}", {"name": template.name, "kind": "tool", "published": True}, format="json"
    )
    assert response.status_code == 200
    template.refresh_from_db()
    assert template.published is False


def test_filters_and_categories(client_for, developer):
    make_tool_template(developer, name="a", category="Maths", tags=["calc", "x"])
    make_tool_template(developer, name="b", category="text", tags=["calc"])
    client = client_for(developer)
    assert {t["name"] for t in client.get(URL, {"category": "maths"}).json()["results"]} == {"a"}
    assert {t["name"] for t in client.get(URL, {"tag": "x"}).json()["results"]} == {"a"}
    assert {t["name"] for t in client.get(URL, {"kind": "tool", "search": "b"}).json()["results"]} == {"b"}
    assert client.get(URL, {"published": "true"}).json()["count"] == 0
    assert {t["name"] for t in client.get(URL, {"owner": developer.username}).json()["results"]} == {"a", "b"}
    categories = client.get(f"{URL}/categories").json()
    assert categories == [{"category": "Maths", "count": 1}, {"category": "text", "count": 1}]


# --- parameters ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"max_tokens": "many", "topic": "x"}, "params.max_tokens"),
        ({"max_tokens": 0, "topic": "x"}, "params.max_tokens"),
        ({"prefix": "Not Valid", "topic": "x"}, "params.prefix"),
        ({}, "params.topic"),
        ({"topic": "x", "nope": 1}, "params.nope"),
    ],
)
def test_parameter_errors_name_the_parameter(client_for, developer, bundle_payload, params, field):
    client = client_for(developer)
    template = client.post(URL, bundle_payload, format="json").json()
    response = client.post(f"{URL}/{template['id']}/instantiate", {"params": params}, format="json")
    assert_problem(response, 400, field)
    response = client.get(f"{URL}/{template['id']}/preview", {"params": __import__("json").dumps(params)})
    assert_problem(response, 400, field)
    assert not Tool.objects.exists()


# --- preview ---------------------------------------------------------------------------------
def test_preview_renders_resolves_validates_and_writes_nothing(
    client_for, developer, bundle_payload, shared_model
):
    client = client_for(developer)
    template = client.post(URL, bundle_payload, format="json").json()
    with CaptureQueriesContext(connection) as queries:
        response = client.get(
            f"{URL}/{template['id']}/preview", {"params.topic": "algebra", "params.max_tokens": "64"}
        )
    assert response.status_code == 200, response.json()
    writes = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].split()[0].upper() in ("INSERT", "UPDATE", "DELETE")
        and not q["sql"].startswith('INSERT INTO "observability_')  # the request metrics middleware
    ]
    assert writes == []
    body = response.json()
    agent = next(r for r in body["resources"] if r["key"] == "helper")["spec"]
    assert agent["system_prompt"] == "You help with algebra."
    assert agent["parameters"] == {"max_tokens": 64}
    assert body["references"] == [{"kind": "model", "name": "echo-shared", "id": str(shared_model.pk)}]
    assert body["missing"] == [] and body["valid"] is True
    assert {r["key"]: r["ok"] for r in body["validation"]} == {"calc": True, "helper": True, "flow": True}


def test_preview_reports_invalid_resources(client_for, developer, bundle_payload):
    client = client_for(developer)
    template = client.post(URL, bundle_payload, format="json").json()
    # The topic lands in the agent's system prompt, which must be a valid template.
    body = client.get(f"{URL}/{template['id']}/preview", {"params.topic": "{% broken"}).json()
    helper = next(r for r in body["validation"] if r["key"] == "helper")
    assert helper["ok"] is False and body["valid"] is False, body
    assert helper["errors"][0]["field"] == "system_prompt"


# --- references ------------------------------------------------------------------------------
def test_unresolved_references_are_listed(client_for, developer, other_developer, bundle_payload):
    bundle_payload["body"]["resources"][1]["spec"]["skills"] = [{"$ref": "skill", "name": "no-such-skill"}]
    from masterdata.services import skill_create

    skill_create(owner=developer, name="no-such-skill")
    template = services.template_create(owner=developer, **bundle_payload)
    services.template_set_published(template=template, published=True)
    other = client_for(other_developer)  # has neither the model nor the skill
    preview = other.get(f"{URL}/{template.pk}/preview", {"params.topic": "x"}).json()
    assert {(m["kind"], m["name"]) for m in preview["missing"]} == {
        ("model", "echo-shared"),
        ("skill", "no-such-skill"),
    }
    assert preview["valid"] is False
    response = other.post(f"{URL}/{template.pk}/instantiate", {"params": {"topic": "x"}}, format="json")
    body = assert_problem(response, 400)
    assert {e["field"] for e in body["errors"]} == {"resources[1].spec.model", "resources[1].spec.skills[0]"}
    assert all(e["code"] == "unresolved_reference" for e in body["errors"])
    # Once the other user has a model of that name (their own), it resolves to theirs.
    own = make_model(other_developer, name="echo-shared")
    skill_create(owner=other_developer, name="no-such-skill")
    response = other.post(f"{URL}/{template.pk}/instantiate", {"params": {"topic": "x"}}, format="json")
    assert response.status_code == 201, response.json()
    assert Agent.objects.get(owner=other_developer).model == own


# --- instantiate -----------------------------------------------------------------------------
def test_instantiate_creates_everything_with_provenance_and_audit(client_for, developer, bundle_payload):
    client = client_for(developer)
    template = client.post(URL, bundle_payload, format="json").json()
    response = client.post(
        f"{URL}/{template['id']}/instantiate",
        {"params": {"topic": "sums", "prefix": "ops"}, "names": {"flow": "Ops flow"}, "deploy": True},
        format="json",
    )
    assert response.status_code == 201, response.json()
    result = response.json()
    assert [(r["key"], r["kind"], r["name"]) for r in result["resources"]] == [
        ("calc", "tool", "ops_calc"),
        ("helper", "agent", "ops helper"),
        ("flow", "workflow", "Ops flow"),
    ]
    tool, agent, flow = Tool.objects.get(), Agent.objects.get(), Workflow.objects.get()
    assert tool.status == ToolStatus.DEPLOYED and agent.status == "deployed"
    assert list(agent.tools.all()) == [tool]
    assert agent.parameters == {"max_tokens": 256}
    assert flow.definition["nodes"][0]["config"]["agent_id"] == str(agent.pk)
    assert {tool.owner, agent.owner, flow.owner} == {developer}
    version = TemplateVersion.objects.get(template_id=template["id"])
    assert set(TemplateInstance.objects.values_list("resource_id", "version")) == {
        (tool.pk, version.pk),
        (agent.pk, version.pk),
        (flow.pk, version.pk),
    }
    event = ObservabilityEvent.objects.get(type="audit.instantiate")
    assert event.resource_id == template["id"]


def test_instantiate_is_atomic_when_the_last_resource_fails(client_for, developer, bundle_payload):
    client = client_for(developer)
    template = client.post(URL, bundle_payload, format="json").json()
    from workflows.services import workflow_create

    workflow_create(
        owner=developer,
        name="taken",
        definition={"nodes": [{"id": "a", "type": "transform", "config": {"template": "x"}}], "edges": []},
    )
    before = (
        Tool.objects.count(),
        Agent.objects.count(),
        Workflow.objects.count(),
        TemplateInstance.objects.count(),
    )
    response = client.post(
        f"{URL}/{template['id']}/instantiate",
        {"params": {"topic": "x"}, "names": {"flow": "taken"}, "deploy": True},
        format="json",
    )
    assert_problem(response, 400, "resources.flow.name")
    after = (
        Tool.objects.count(),
        Agent.objects.count(),
        Workflow.objects.count(),
        TemplateInstance.objects.count(),
    )
    assert after == before == (0, 0, 1, 0)


# --- versions --------------------------------------------------------------------------------
def test_versions_are_immutable_and_instances_keep_theirs(client_for, developer):
    client = client_for(developer)
    template = make_tool_template(developer)
    v1 = template.latest_version
    first = client.post(f"{URL}/{template.pk}/instantiate", {"params": {"name": "one"}}, format="json").json()

    # A changed body via PUT is version 2; the same body again is no new version.
    put = {
        "name": template.name,
        "kind": "tool",
        "body": tool_body(function="text_stats"),
        "changelog": "words",
    }
    response = client.put(f"{URL}/{template.pk}", put, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["latest_version"]["number"] == 2
    assert client.put(f"{URL}/{template.pk}", put, format="json").json()["latest_version"]["number"] == 2
    # An identical version is a 409; a different one is version 3.
    response = client.post(
        f"{URL}/{template.pk}/versions", {"body": tool_body(function="text_stats")}, format="json"
    )
    assert_problem(response, 409)
    response = client.post(
        f"{URL}/{template.pk}/versions",
        {
            "body": tool_body(function="text_stats"),
            "parameters": {"type": "object", "properties": {"name": {"type": "string", "default": "w"}}},
            "changelog": "default w",
        },
        format="json",
    )
    assert response.status_code == 201 and response.json()["number"] == 3
    versions = client.get(f"{URL}/{template.pk}/versions").json()["results"]
    assert [v["number"] for v in versions] == [3, 2, 1]

    v1.refresh_from_db()
    assert v1.body == tool_body()
    with pytest.raises(ValueError, match="immutable"):
        v1.save()
    # Version 1 still instantiates as it was; the first instance still points at it.
    client.post(f"{URL}/{template.pk}/instantiate", {"version": 1, "params": {"name": "two"}}, format="json")
    assert Tool.objects.get(name="two").config == {"function": "calculator"}
    assert TemplateInstance.objects.get(resource_id=first["resources"][0]["id"]).version == v1
    assert_problem(
        client.post(f"{URL}/{template.pk}/instantiate", {"version": 9}, format="json"), 400, "version"
    )


def test_delete_keeps_the_instances_and_nulls_their_version(client_for, developer):
    template = make_tool_template(developer)
    client = client_for(developer)
    client.post(f"{URL}/{template.pk}/instantiate", {}, format="json")
    assert client.delete(f"{URL}/{template.pk}").status_code == 204
    instance = TemplateInstance.objects.get()
    assert (
        instance.version is None and instance.template_name == template.name and instance.version_number == 1
    )
    assert Tool.objects.filter(pk=instance.resource_id).exists()


def test_kind_cannot_change(client_for, developer):
    template = make_tool_template(developer)
    response = client_for(developer).put(
        f"{URL}/{template.pk}", {"name": "x", "kind": "agent"}, format="json"
    )
    assert_problem(response, 400, "kind")


def test_the_preview_service_issues_no_write_at_all(developer, bundle_payload):
    template = services.template_create(owner=developer, **bundle_payload)
    with CaptureQueriesContext(connection) as queries:
        result = services.template_preview(template=template, actor=developer, params={"topic": "t"})
    assert result["valid"] is True
    statements = {q["sql"].split()[0].upper() for q in queries.captured_queries}
    assert statements <= {"SELECT", "SAVEPOINT", "RELEASE"}, statements


def test_seed_demo_publishes_two_templates_that_instantiate(client_for, other_developer):
    from django.core.management import call_command

    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    templates = Template.objects.filter(published=True)
    assert sorted(templates.values_list("name", flat=True)) == ["Echo assistant", "Shout workflow"]
    owner = templates.first().owner
    client = client_for(owner)
    for template in templates:
        response = client.post(f"{URL}/{template.pk}/instantiate", {"deploy": True}, format="json")
        assert response.status_code == 201, response.json()
    assert Agent.objects.get(name="my-assistant").status == "deployed"
    assert Workflow.objects.get(name="shout").definition["nodes"][0]["config"]["template"] == (
        ">> {{ inputs.text | upper }}"
    )
    # Everyone sees them; another user lacks the demo model and tool, and is told so.
    other = client_for(other_developer)
    assert other.get(URL).json()["count"] == 2
    echo = templates.get(name="Echo assistant")
    missing = other.get(f"{URL}/{echo.pk}/preview").json()["missing"]
    assert {(m["kind"], m["name"]) for m in missing} == {("model", "Echo (demo)"), ("tool", "calculator")}


def test_a_role_that_may_not_create_may_preview_but_not_instantiate(client_for, developer, plain_user):
    template = make_tool_template(developer)
    services.template_set_published(template=template, published=True)
    client = client_for(plain_user)
    assert client.get(f"{URL}/{template.pk}/preview").json()["valid"] is True
    assert_problem(client.post(f"{URL}/{template.pk}/instantiate", {}, format="json"), 403)
    assert not Tool.objects.exists()


def test_a_failed_deploy_rolls_everything_back(client_for, developer, bundle_payload, shared_model):
    client = client_for(developer)
    template = client.post(URL, bundle_payload, format="json").json()
    shared_model.is_active = False  # the agent's deploy check fails on an inactive model
    shared_model.save(update_fields=["is_active"])
    response = client.post(
        f"{URL}/{template['id']}/instantiate", {"params": {"topic": "x"}, "deploy": True}, format="json"
    )
    body = assert_problem(response, 400, "resources.helper.deploy")
    assert "model" in body["errors"][0]["message"]
    assert (Tool.objects.count(), Agent.objects.count(), Workflow.objects.count()) == (0, 0, 0)
    assert not TemplateInstance.objects.exists()
