"""POST /api/v1/agents/{id}/deploy and /undeploy: the checks, the frozen snapshot, and that
later edits never reach a deployed version."""

import pytest

from agentmesh.core.sharing import object_share
from agents.models import Agent, AgentStatus, AgentVersion
from agents.services import agent_deploy, agent_update
from masterdata.constraints import effective_limits
from masterdata.services import (
    constraint_create,
    model_config_update,
    prompt_create,
    secret_create,
    skill_create,
)
from observability.models import ObservabilityEvent
from tests.api_base import assert_problem
from tools.services import tool_create

from .factories import make_agent, make_deployed_tool, make_model

pytestmark = pytest.mark.django_db

AGENTS = "/api/v1/agents"


def deploy(client, agent):
    return client.post(f"{AGENTS}/{agent.pk}/deploy", format="json")


def failed_checks(body) -> set[str]:
    return {c["name"] for c in body["checks"] if not c["ok"]}


def test_deploy_snapshots_the_agent(client_for, developer):
    model = make_model(developer, context_window=8000, default_parameters={"temperature": 0.2, "top_p": 0.9})
    prompt = prompt_create(
        owner=developer,
        name="support",
        template="You help {{ customer }} in {{ language }}.",
        variables=[{"name": "customer"}, {"name": "language", "default": "English"}],
    )
    tool = make_deployed_tool(developer, name="calc")
    skill = skill_create(owner=developer, name="Arithmetic", description="Sums and products.")
    limit = constraint_create(owner=developer, name="short", type="resource_limit", rules={"max_turns": 3})
    policy = constraint_create(
        owner=developer, name="policy", type="tool_policy", rules={"allowed_tools": ["calc", "other"]}
    )
    inactive = constraint_create(
        owner=developer, name="off", type="resource_limit", rules={"max_turns": 1}, is_active=False
    )
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    agent = make_agent(
        developer,
        name="helper",
        model=model,
        prompt=prompt,
        prompt_variables={"customer": "ACME"},
        tools=[tool],
        skills=[skill],
        constraints=[limit, policy, inactive],
        memory={"max_messages": 20, "max_tokens": 4000},
        response_format={"type": "json_schema", "schema": schema},
        parameters={"temperature": 0.7, "max_tokens": 500},
    )

    response = deploy(client_for(developer), agent)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["version"] == 1 and body["status"] == "deployed"
    assert [c["name"] for c in body["checks"]] == [
        "model",
        "model_api_key",
        "tools",
        "system_prompt",
        "constraints",
        "memory",
    ]
    assert all(c["ok"] for c in body["checks"])
    agent.refresh_from_db()
    assert agent.status == AgentStatus.DEPLOYED and agent.deployed_at is not None
    assert agent.deployed_version.version == 1
    assert agent.deployed_version.created_by == developer
    assert agent.deployed_version.snapshot == {
        "agent": {"id": str(agent.pk), "name": "helper"},
        "model_config_id": str(model.pk),
        "system_prompt": "You help {{ customer }} in {{ language }}.",
        "prompt": {"id": str(prompt.pk), "version": 1},
        "prompt_variables": {"language": "English", "customer": "ACME"},
        "tools": [
            {
                "id": str(tool.pk),
                "name": "calc",
                "version": tool.version,
                "description": tool.description,
                "parameters_schema": tool.parameters_schema,
            }
        ],
        "skills": [{"id": str(skill.pk), "name": "Arithmetic", "description": "Sums and products."}],
        "limits": {**effective_limits([]), "max_turns": 3, "allowed_tools": ["calc", "other"]},
        "memory": {"max_messages": 20, "max_tokens": 4000},
        "response_format": {"type": "json_schema", "schema": schema},
        "parameters": {"temperature": 0.7, "top_p": 0.9, "max_tokens": 500},
    }
    assert ObservabilityEvent.objects.filter(type="agent.deployed", resource_id=str(agent.pk)).exists()

    again = deploy(client_for(developer), agent)
    assert again.status_code == 200 and again.json()["version"] == 2
    assert list(agent.versions.values_list("version", flat=True)) == [2, 1]


def test_minimal_agent_snapshot(developer):
    agent = make_agent(developer, system_prompt="Be brief.")
    version, checks = agent_deploy(agent=agent, actor=developer)
    assert version is not None and all(c.ok for c in checks)
    snapshot = version.snapshot
    assert snapshot["system_prompt"] == "Be brief." and snapshot["prompt"] is None
    assert snapshot["prompt_variables"] == {} and snapshot["tools"] == [] and snapshot["skills"] == []
    assert snapshot["memory"] == {"max_messages": None, "max_tokens": None}
    assert snapshot["response_format"] == {"type": "text"} and snapshot["parameters"] == {}
    assert snapshot["limits"] == effective_limits([])


def test_undeployed_tool_is_refused_with_the_report(client_for, developer):
    draft = tool_create(owner=developer, name="draft_calc", type="builtin", config={"function": "calculator"})
    agent = make_agent(developer, tools=[draft, make_deployed_tool(developer)])

    response = deploy(client_for(developer), agent)

    body = assert_problem(response, 400, "checks.tools")
    error = next(e for e in body["errors"] if e["field"] == "checks.tools")
    assert error["code"] == "check_failed" and "draft_calc is not deployed (draft)" in error["message"]
    assert failed_checks(body) == {"tools"}
    assert len(body["checks"]) == 6 and "tools" in body["detail"]
    agent.refresh_from_db()
    assert agent.status == AgentStatus.DRAFT and agent.deployed_version is None
    assert not AgentVersion.objects.exists()
    event = ObservabilityEvent.objects.get(type="agent.deploy_failed")
    assert event.payload["failed"] == ["tools"]


def test_a_prompt_variable_without_value_or_default_fails(client_for, developer):
    prompt = prompt_create(
        owner=developer, name="p", template="Hi {{ customer }}", variables=[{"name": "customer"}]
    )
    agent = make_agent(developer, prompt=prompt)
    client = client_for(developer)

    body = assert_problem(deploy(client, agent), 400, "checks.system_prompt")
    assert failed_checks(body) == {"system_prompt"}
    assert "customer" in next(c for c in body["checks"] if c["name"] == "system_prompt")["message"]

    agent_update(agent=agent, prompt_variables={"customer": "ACME"})
    assert deploy(client, agent).status_code == 200


def test_an_inline_system_prompt_with_a_missing_variable_fails(client_for, developer):
    agent = make_agent(developer, system_prompt="Answer in {{ language }}.")
    body = assert_problem(deploy(client_for(developer), agent), 400, "checks.system_prompt")
    assert "language" in body["errors"][0]["message"]


def test_inactive_model_fails(client_for, developer):
    agent = make_agent(developer)
    model_config_update(model_config=agent.model, actor=developer, is_active=False)
    body = assert_problem(deploy(client_for(developer), agent), 400, "checks.model")
    assert failed_checks(body) == {"model"}
    assert Agent.objects.get(pk=agent.pk).status == AgentStatus.DRAFT


def test_api_key_secret_the_model_owner_may_no_longer_use_fails(developer, other_developer):
    secret = secret_create(owner=other_developer, name="key", value="sk-test-123456789")
    object_share(obj=secret, users=[developer], actions=["use"])
    model = make_model(developer)
    model_config_update(
        model_config=model, actor=developer, provider="openai", model_name="gpt-x", api_key_secret=secret
    )
    agent = make_agent(developer, model=model)
    version, checks = agent_deploy(agent=agent, actor=developer)
    assert version is not None
    assert next(c for c in checks if c.name == "model_api_key").ok

    object_share(obj=secret, users=[developer], actions=["view"], revoke=True)
    version, checks = agent_deploy(agent=agent, actor=developer)
    assert version is None
    assert {c.name for c in checks if not c.ok} == {"model_api_key"}


@pytest.mark.parametrize(
    ("rules", "type_"),
    [
        ({"allowed_tools": ["something_else"]}, "tool_policy"),
        ({"denied_tools": ["calc"]}, "tool_policy"),
        ({"blocked_terms": ["  "]}, "content_policy"),
    ],
)
def test_inconsistent_constraints_fail(client_for, developer, rules, type_):
    constraint = constraint_create(owner=developer, name="c", type=type_, rules=rules)
    agent = make_agent(
        developer, tools=[make_deployed_tool(developer, name="calc")], constraints=[constraint]
    )
    body = assert_problem(deploy(client_for(developer), agent), 400, "checks.constraints")
    assert failed_checks(body) == {"constraints"}


def test_memory_larger_than_the_context_window_fails(client_for, developer):
    agent = make_agent(
        developer, model=make_model(developer, context_window=1000), memory={"max_tokens": 2000}
    )
    body = assert_problem(deploy(client_for(developer), agent), 400, "checks.memory")
    assert failed_checks(body) == {"memory"}


def test_a_tool_the_deployer_may_not_use_fails(client_for, developer, other_developer):
    tool = make_deployed_tool(developer)
    agent = make_agent(developer, tools=[tool])
    object_share(obj=agent, users=[other_developer], actions=["change"])
    body = assert_problem(deploy(client_for(other_developer), agent), 400, "checks.tools")
    assert "you may not use" in body["errors"][0]["message"]
    object_share(obj=tool, users=[other_developer], actions=["use"])
    assert deploy(client_for(other_developer), agent).status_code == 200


def test_undeploy(client_for, developer):
    agent = make_agent(developer)
    client = client_for(developer)
    assert deploy(client, agent).status_code == 200
    response = client.post(f"{AGENTS}/{agent.pk}/undeploy", format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "undeployed" and response.json()["deployed_version"] == 1
    agent.refresh_from_db()
    assert agent.status == AgentStatus.UNDEPLOYED and agent.deployed_version.version == 1
    assert ObservabilityEvent.objects.filter(type="agent.undeployed").count() == 1
    # Undeploying again changes nothing; deploying again makes a new version.
    assert client.post(f"{AGENTS}/{agent.pk}/undeploy", format="json").json()["status"] == "undeployed"
    assert ObservabilityEvent.objects.filter(type="agent.undeployed").count() == 1
    assert deploy(client, agent).json()["version"] == 2


def test_editing_a_deployed_agent_leaves_the_deployed_version_unchanged(client_for, developer):
    agent = make_agent(developer, system_prompt="Version one.")
    client = client_for(developer)
    assert deploy(client, agent).status_code == 200
    agent.refresh_from_db()
    deployed = agent.deployed_version
    before = dict(deployed.snapshot)

    tool = make_deployed_tool(developer)
    response = client.patch(
        f"{AGENTS}/{agent.pk}",
        {"system_prompt": "Version two.", "tools": [str(tool.pk)], "memory": {"max_messages": 5}},
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "deployed" and response.json()["deployed_version"] == 1
    agent.refresh_from_db()
    assert agent.deployed_version_id == deployed.pk and agent.status == AgentStatus.DEPLOYED
    assert AgentVersion.objects.get(pk=deployed.pk).snapshot == before
    assert before["system_prompt"] == "Version one." and before["tools"] == []
    with pytest.raises(ValueError, match="immutable"):
        deployed.save()

    assert deploy(client, agent).json()["version"] == 2
    agent.refresh_from_db()
    assert agent.deployed_version.snapshot["system_prompt"] == "Version two."
    assert [t["id"] for t in agent.deployed_version.snapshot["tools"]] == [str(tool.pk)]


def test_who_may_deploy(client_for, developer, other_developer, plain_user):
    agent = make_agent(developer)
    assert_problem(deploy(client_for(other_developer), agent), 404)
    assert_problem(client_for(other_developer).post(f"{AGENTS}/{agent.pk}/undeploy"), 404)
    object_share(obj=agent, users=[plain_user], actions=["use"])
    assert_problem(deploy(client_for(plain_user), agent), 403)
    assert_problem(client_for(plain_user).post(f"{AGENTS}/{agent.pk}/undeploy"), 403)
    assert not AgentVersion.objects.exists()
