"""Templates made from a workflow or an agent, and instantiated by someone else."""

import yaml

from agents.models import Agent
from masterdata.services import secret_create
from templates_app.models import Template
from tests.agents.factories import make_agent, make_deployed_tool, make_model
from tests.api_base import assert_problem
from tools import services as tool_services
from tools.models import Tool
from workflows.models import Workflow
from workflows.services import workflow_create

SECRET_VALUE = "sk-live-TOP-SECRET-4242-never-exported"


def _workflow(owner):
    secret = secret_create(owner=owner, name="api-token", value=SECRET_VALUE)
    fetch = tool_services.tool_create(
        owner=owner,
        name="fetch_items",
        type="http",
        config={
            "url": "https://api.example.com/items",
            "auth": {"type": "bearer", "secret_id": str(secret.pk)},
        },
    )
    calc = make_deployed_tool(owner, name="calc")
    agent = make_agent(owner, name="Helper", model=make_model(owner, name="echo-main"), tools=[calc])
    definition = {
        "inputs": {"type": "object", "properties": {"q": {"type": "string", "default": "hello"}}},
        "nodes": [
            {"id": "fetch", "type": "tool", "config": {"tool_id": str(fetch.pk), "arguments": {}}},
            {
                "id": "ask",
                "type": "agent",
                "config": {"agent_id": str(agent.pk), "input": "Summarise {{ inputs.q }}"},
            },
        ],
        "edges": [{"source": "fetch", "target": "ask"}],
    }
    return workflow_create(owner=owner, name="Fetch and ask", definition=definition), agent, fetch, secret


def test_template_from_a_workflow_instantiated_by_someone_without_access(
    client_for, developer, other_developer
):
    workflow, agent, fetch, secret = _workflow(developer)
    owner = client_for(developer)
    response = owner.post(
        f"/api/v1/workflows/{workflow.pk}/template",
        {
            "name": "Fetch and ask",
            "include": ["agents", "tools"],
            "parameterize": [
                {
                    "name": "instruction",
                    "path": "nodes.ask.config.input",
                    "description": "What the agent does.",
                },
                {"name": "default_q", "path": "inputs.properties.q.default"},
            ],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    template = response.json()
    assert template["kind"] == "bundle"
    version = template["latest_version"]
    assert version["parameters"]["properties"]["instruction"] == {
        "default": "Summarise {{ inputs.q }}",
        "type": "string",
        "description": "What the agent does.",
    }
    resources = {r["key"]: r for r in version["body"]["resources"]}
    assert set(resources) == {"fetch_items", "calc", "Helper", "workflow"}
    flow = resources["workflow"]["spec"]["definition"]
    assert flow["nodes"][0]["config"]["tool_id"] == {"$ref": "local", "key": "fetch_items"}
    assert flow["nodes"][1]["config"]["agent_id"] == {"$ref": "local", "key": "Helper"}
    assert flow["nodes"][1]["config"]["input"] == "{{ params.instruction }}"
    assert resources["Helper"]["spec"]["model"] == {"$ref": "model", "name": "echo-main"}
    assert resources["fetch_items"]["spec"]["config"]["auth"]["secret_id"] == {
        "$ref": "secret",
        "name": "api-token",
    }

    # No secret value (nor any id of the owner's objects) in any export.
    for fmt in ("yaml", "json"):
        exported = owner.get(f"/api/v1/templates/{template['id']}/export", {"format": fmt}).content
        assert SECRET_VALUE.encode() not in exported
        for obj in (secret, fetch, agent, workflow, agent.model):
            assert str(obj.pk).encode() not in exported
    assert yaml.safe_load(exported)["versions"][0]["body"] == version["body"]

    # Someone with no access to the workflow, its agent, tools, model or secret.
    other = client_for(other_developer)
    assert_problem(other.get(f"/api/v1/workflows/{workflow.pk}"), 404)
    assert_problem(other.post(f"/api/v1/workflows/{workflow.pk}/template", {"name": "x"}, format="json"), 404)
    share = owner.post(
        f"/api/v1/templates/{template['id']}/share",
        {"users": [other_developer.username], "actions": ["view", "use"]},
        format="json",
    )
    assert share.status_code == 200, share.json()
    # Their own model and secret of the same names are what the references resolve to.
    missing = other.get(f"/api/v1/templates/{template['id']}/preview").json()["missing"]
    assert {(m["kind"], m["name"]) for m in missing} == {("model", "echo-main"), ("secret", "api-token")}
    their_model = make_model(other_developer, name="echo-main")
    their_secret = secret_create(owner=other_developer, name="api-token", value="theirs")
    response = other.post(
        f"/api/v1/templates/{template['id']}/instantiate",
        {"params": {"instruction": "Explain {{ inputs.q }}"}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    made = {r["key"]: r for r in response.json()["resources"]}
    new_tool = Tool.objects.get(pk=made["fetch_items"]["id"])
    new_agent = Agent.objects.get(pk=made["Helper"]["id"])
    new_flow = Workflow.objects.get(pk=made["workflow"]["id"])
    assert {new_tool.owner, new_agent.owner, new_flow.owner} == {other_developer}
    assert new_tool.config["auth"]["secret_id"] == str(their_secret.pk)
    assert new_agent.model == their_model
    assert [t.name for t in new_agent.tools.all()] == [
        "calc"
    ] and new_agent.tools.get().owner == other_developer
    nodes = {n["id"]: n for n in new_flow.definition["nodes"]}
    assert nodes["ask"]["config"] == {"agent_id": str(new_agent.pk), "input": "Explain {{ inputs.q }}"}
    assert nodes["fetch"]["config"]["tool_id"] == str(new_tool.pk)
    assert new_flow.definition["inputs"]["properties"]["q"]["default"] == "hello"


def test_template_from_a_workflow_by_reference(client_for, developer):
    workflow, *_ = _workflow(developer)
    response = client_for(developer).post(
        f"/api/v1/workflows/{workflow.pk}/template", {"name": "By name", "version": 1}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()["latest_version"]["body"]
    assert response.json()["kind"] == "workflow" and len(body["resources"]) == 1
    nodes = body["resources"][0]["spec"]["definition"]["nodes"]
    assert nodes[0]["config"]["tool_id"] == {"$ref": "tool", "name": "fetch_items"}
    assert nodes[1]["config"]["agent_id"] == {"$ref": "agent", "name": "Helper"}


def test_template_from_a_workflow_refuses_a_bad_path_or_version(client_for, developer):
    workflow, *_ = _workflow(developer)
    client = client_for(developer)
    url = f"/api/v1/workflows/{workflow.pk}/template"
    bad_path = {"name": "x", "parameterize": [{"name": "p", "path": "nodes.nope.config.input"}]}
    assert_problem(client.post(url, bad_path, format="json"), 400, "parameterize[0].path")
    assert_problem(client.post(url, {"name": "x", "version": 7}, format="json"), 400, "version")
    assert not Template.objects.exists()


def test_template_from_an_agent_with_its_tools(client_for, developer, other_developer):
    _, agent, _, _ = _workflow(developer)
    client = client_for(developer)
    response = client.post(f"/api/v1/agents/{agent.pk}/template", {"name": "Helper tpl"}, format="json")
    assert response.status_code == 201, response.json()
    spec = response.json()["latest_version"]["body"]["resources"][0]["spec"]
    assert response.json()["kind"] == "agent"
    assert spec["tools"] == [{"$ref": "tool", "name": "calc"}]
    response = client.post(
        f"/api/v1/agents/{agent.pk}/template", {"name": "Helper bundle", "include": ["tools"]}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert [r["kind"] for r in response.json()["latest_version"]["body"]["resources"]] == ["tool", "agent"]
    assert_problem(
        client_for(other_developer).post(f"/api/v1/agents/{agent.pk}/template", {"name": "x"}, format="json"),
        404,
    )


def test_a_plain_user_may_not_make_templates(client_for, developer, plain_user):
    workflow, *_ = _workflow(developer)
    workflow_owner_client = client_for(plain_user)
    assert_problem(
        workflow_owner_client.post(f"/api/v1/workflows/{workflow.pk}/template", {"name": "x"}, format="json"),
        403,
    )
