"""/api/v1/agents CRUD, filters, stats, versions, and who sees which runs, conversations and
messages (rows made with the ORM: running agents is tested in test_interact_api.py)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agentmesh.core.sharing import object_share
from agents.models import Agent, AgentRun, AgentRunStep, Conversation, Message
from agents.selectors import agent_stats
from agents.services import agent_deploy
from masterdata.services import constraint_create, prompt_create, skill_create
from tests.api_base import OwnedResourceAPITests, assert_problem

from .factories import make_agent, make_deployed_tool, make_model

AGENTS = "/api/v1/agents"
NO_SUCH_ID = "00000000-0000-0000-0000-000000000000"


class TestAgentAPI(OwnedResourceAPITests):
    basename = "agents-api:agent"
    model = Agent
    invalid_payload = ({"name": "helper", "model": NO_SUCH_ID}, "model")
    compare_fields = ["name", "description", "system_prompt"]

    def get_create_payload(self, user):
        return {"name": "helper", "model": str(make_model(user).pk), "description": "Answers questions."}

    def get_update_payload(self, obj):
        return {
            "name": "renamed",
            "model": str(obj.model_id),
            "description": "changed",
            "system_prompt": "Hi.",
        }

    def make_object(self, owner):
        return make_agent(owner)


pytestmark = pytest.mark.django_db


def test_create_with_every_reference(client_for, developer):
    tool = make_deployed_tool(developer)
    skill = skill_create(owner=developer, name="s")
    constraint = constraint_create(owner=developer, name="c", type="resource_limit", rules={"max_turns": 2})
    prompt = prompt_create(owner=developer, name="p", template="Hello {{ who }}")
    payload = {
        "name": "helper",
        "model": str(make_model(developer).pk),
        "prompt": str(prompt.pk),
        "prompt_variables": {"who": "world"},
        "tools": [str(tool.pk)],
        "skills": [str(skill.pk)],
        "constraints": [str(constraint.pk)],
        "memory": {"max_messages": 10},
        "response_format": {"type": "json_schema", "schema": {"type": "object"}},
        "parameters": {"temperature": 0.5},
    }
    response = client_for(developer).post(AGENTS, payload, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    for field in ("prompt", "prompt_variables", "tools", "skills", "constraints", "memory", "parameters"):
        assert body[field] == payload[field], field
    assert body["response_format"] == payload["response_format"]
    assert body["status"] == "draft" and body["deployed_version"] is None and body["versions"] == []
    assert body["owner"] == developer.username


def test_response_format_defaults_to_text(client_for, developer):
    response = client_for(developer).post(
        AGENTS, {"name": "a", "model": str(make_model(developer).pk)}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["response_format"] == {"type": "text"}


def test_shared_references_may_be_used(client_for, developer, other_developer):
    model, tool = make_model(other_developer), make_deployed_tool(other_developer)
    object_share(obj=model, users=[developer], actions=["use"])
    object_share(obj=tool, users=[developer], actions=["use"])
    payload = {"name": "a", "model": str(model.pk), "tools": [str(tool.pk)]}
    assert client_for(developer).post(AGENTS, payload, format="json").status_code == 201


def test_view_share_is_not_enough_to_use_a_reference(client_for, developer, other_developer):
    model = make_model(other_developer)
    object_share(obj=model, users=[developer], actions=["view"])
    response = client_for(developer).post(AGENTS, {"name": "a", "model": str(model.pk)}, format="json")
    assert_problem(response, 400, "model")


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"model": "theirs"}, "model"),
        ({"tools": ["theirs"]}, "tools"),
        ({"skills": ["theirs"]}, "skills"),
        ({"constraints": ["theirs"]}, "constraints"),
        ({"prompt": "theirs"}, "prompt"),
        ({"tools": [NO_SUCH_ID]}, "tools"),
        ({"tools": ["not-a-uuid"]}, "tools"),
        ({"model": "not-a-uuid"}, "model"),
        ({"name": "  "}, "name"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.schema"),
        (
            {"response_format": {"type": "json_schema", "schema": {"type": "nonsense"}}},
            "response_format.schema",
        ),
        ({"response_format": {"type": "text", "schema": {}}}, "response_format.schema"),
        ({"response_format": "text"}, "response_format"),
        ({"memory": {"max_messages": 0}}, "memory.max_messages"),
        ({"memory": {"max_messages": 501}}, "memory.max_messages"),
        ({"memory": {"max_tokens": 1_000_001}}, "memory.max_tokens"),
        ({"memory": {"window": 3}}, "memory.window"),
        ({"parameters": {"temperature": 3}}, "parameters.temperature"),
        ({"parameters": {"top_p": -0.1}}, "parameters.top_p"),
        ({"parameters": {"max_tokens": 0}}, "parameters.max_tokens"),
        ({"parameters": {"seed": 1}}, "parameters.seed"),
        ({"prompt_variables": ["x"]}, "prompt_variables"),
        ({"system_prompt": "Hello {{ name"}, "system_prompt"),
    ],
)
def test_invalid_agents_are_400_naming_the_field(client_for, developer, other_developer, extra, field):
    theirs = {
        "model": lambda: make_model(other_developer),
        "tools": lambda: make_deployed_tool(other_developer),
        "skills": lambda: skill_create(owner=other_developer, name="s"),
        "constraints": lambda: constraint_create(
            owner=other_developer, name="c", type="resource_limit", rules={"max_turns": 1}
        ),
        "prompt": lambda: prompt_create(owner=other_developer, name="p", template="x"),
    }
    payload = {"name": "helper", "model": str(make_model(developer).pk)}
    for key, value in extra.items():
        if value == "theirs":
            value = str(theirs[key]().pk)
        elif value == ["theirs"]:
            value = [str(theirs[key]().pk)]
        payload[key] = value
    response = client_for(developer).post(AGENTS, payload, format="json")
    assert_problem(response, 400, field)
    assert not Agent.objects.exists()


def test_max_tokens_above_the_context_window_is_400(client_for, developer):
    model = make_model(developer, context_window=100)
    payload = {"name": "a", "model": str(model.pk), "parameters": {"max_tokens": 200}}
    assert_problem(client_for(developer).post(AGENTS, payload, format="json"), 400, "parameters.max_tokens")


def test_duplicate_name_is_400(client_for, developer):
    make_agent(developer, name="dup")
    payload = {"name": "dup", "model": str(make_model(developer).pk)}
    assert_problem(client_for(developer).post(AGENTS, payload, format="json"), 400, "name")


def test_update_keeps_references_it_already_had(client_for, developer, other_developer):
    tool = make_deployed_tool(other_developer)
    object_share(obj=tool, users=[developer], actions=["use"])
    agent = make_agent(developer, tools=[tool])
    object_share(obj=tool, users=[developer], actions=["view"], revoke=True)
    client = client_for(developer)
    response = client.patch(f"{AGENTS}/{agent.pk}", {"description": "x"}, format="json")
    assert response.status_code == 200, response.json()
    mine = make_deployed_tool(developer)
    response = client.patch(f"{AGENTS}/{agent.pk}", {"tools": [str(tool.pk), str(mine.pk)]}, format="json")
    assert response.status_code == 200, response.json()
    other = make_deployed_tool(other_developer)
    response = client.patch(f"{AGENTS}/{agent.pk}", {"tools": [str(other.pk)]}, format="json")
    assert_problem(response, 400, "tools")
    assert set(agent.tools.values_list("pk", flat=True)) == {tool.pk, mine.pk}


def test_list_filters_search_and_ordering(client_for, developer, other_developer, admin_user):
    model = make_model(developer)
    alpha = make_agent(developer, name="alpha", model=model, description="sorts invoices")
    make_agent(developer, name="beta")
    agent_deploy(agent=alpha, actor=developer)
    theirs = make_agent(other_developer, name="gamma")
    client = client_for(developer)

    def names(query):
        response = client.get(f"{AGENTS}?{query}")
        assert response.status_code == 200, response.json()
        return [a["name"] for a in response.json()["results"]]

    assert names("status=deployed") == ["alpha"]
    assert names("status=draft") == ["beta"]
    assert names(f"model={model.pk}") == ["alpha"]
    assert names("search=invoices") == ["alpha"]
    assert names("ordering=name") == ["alpha", "beta"]
    assert names("ordering=-name") == ["beta", "alpha"]
    assert names(f"owner={developer.username}&ordering=name") == ["alpha", "beta"]
    assert_problem(client.get(f"{AGENTS}?status=sleeping"), 400, "status")
    admin = client_for(admin_user)
    assert [a["id"] for a in admin.get(f"{AGENTS}?owner={other_developer.username}").json()["results"]] == [
        str(theirs.pk)
    ]


def test_retrieve_shows_versions_and_the_deployed_one(client_for, developer):
    agent = make_agent(developer)
    agent_deploy(agent=agent, actor=developer)
    agent_deploy(agent=agent, actor=developer)
    body = client_for(developer).get(f"{AGENTS}/{agent.pk}").json()
    assert body["deployed_version"] == 2 and body["status"] == "deployed"
    assert [v["version"] for v in body["versions"]] == [2, 1]
    assert set(body["versions"][0]) == {"version", "created_at"}


def test_versions_endpoint(client_for, developer, other_developer):
    agent = make_agent(developer, system_prompt="Hi.")
    agent_deploy(agent=agent, actor=developer)
    client = client_for(developer)
    response = client.get(f"{AGENTS}/{agent.pk}/versions")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    version = body["results"][0]
    assert version["version"] == 1 and version["created_by"] == developer.username
    assert version["snapshot"]["system_prompt"] == "Hi."
    assert_problem(client_for(other_developer).get(f"{AGENTS}/{agent.pk}/versions"), 404)


# --- runs, conversations, messages (rows made directly) ------------------------------------------
def deployed(owner, **fields):
    agent = make_agent(owner, **fields)
    version, _ = agent_deploy(agent=agent, actor=owner)
    assert version is not None
    agent.refresh_from_db()
    return agent


def make_run(agent, user, *, conversation=None, **fields):
    conversation = conversation or Conversation.objects.create(agent=agent, user=user, title="chat")
    return AgentRun.objects.create(
        agent=agent, version=agent.deployed_version, conversation=conversation, user=user, **fields
    )


def test_stats(client_for, developer):
    agent = deployed(developer)
    other = deployed(developer)
    for i, (status, reason) in enumerate(
        [
            ("succeeded", "completed"),
            ("succeeded", "completed"),
            ("incomplete", "max_turns"),
            ("failed", "error"),
        ]
    ):
        make_run(
            agent,
            developer,
            status=status,
            stop_reason=reason,
            duration_ms=100.0 * (i + 1),
            input_tokens=10,
            output_tokens=5,
            cost_usd=Decimal("0.25"),
            tool_calls=i,
            turns=1,
        )
    make_run(agent, developer, status="running")
    make_run(other, developer, status="succeeded", input_tokens=999)
    old = make_run(agent, developer, status="succeeded", input_tokens=1000)
    AgentRun.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))

    response = client_for(developer).get(f"{AGENTS}/{agent.pk}/stats")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["runs"] == 5 and body["days"] == 30
    assert body["by_status"] == {"succeeded": 2, "incomplete": 1, "failed": 1, "running": 1}
    assert body["by_stop_reason"] == {"completed": 2, "max_turns": 1, "error": 1}
    assert body["duration_ms"] == {"p50": 200.0, "p95": 400.0}
    assert (body["input_tokens"], body["output_tokens"]) == (40, 20)
    assert Decimal(body["cost_usd"]) == Decimal("1")
    assert body["tool_calls"] == 0 + 1 + 2 + 3 and body["turns"] == 4
    assert len(body["per_day"]) == 1
    assert body["per_day"][0]["runs"] == 5 and body["per_day"][0]["succeeded"] == 2

    assert client_for(developer).get(f"{AGENTS}/{agent.pk}/stats?days=60").json()["runs"] == 6
    assert_problem(client_for(developer).get(f"{AGENTS}/{agent.pk}/stats?days=0"), 400, "days")


def test_stats_query_count_is_constant(developer):
    agent = deployed(developer)
    make_run(agent, developer, status="succeeded", duration_ms=5.0)
    with CaptureQueriesContext(connection) as few:
        agent_stats(agent=agent)
    for _ in range(10):
        make_run(agent, developer, status="succeeded", duration_ms=5.0)
    with CaptureQueriesContext(connection) as many:
        agent_stats(agent=agent)
    assert len(few) == len(many)


def test_stats_of_an_agent_without_runs(client_for, developer):
    agent = make_agent(developer)
    body = client_for(developer).get(f"{AGENTS}/{agent.pk}/stats").json()
    assert body["runs"] == 0 and body["by_status"] == {} and body["per_day"] == []
    assert body["duration_ms"] == {"p50": None, "p95": None} and Decimal(body["cost_usd"]) == 0


def test_runs_visibility_filters_and_steps(client_for, developer, other_developer, plain_user, admin_user):
    agent = deployed(developer)
    object_share(obj=agent, users=[plain_user], actions=["use"])
    mine = make_run(agent, developer, status="succeeded")
    AgentRunStep.objects.create(run=mine, seq=2, kind="tool", name="calc")
    AgentRunStep.objects.create(run=mine, seq=1, kind="llm", name="echo")
    theirs = make_run(agent, plain_user, status="failed")
    private = deployed(other_developer)
    hidden = make_run(private, other_developer, status="succeeded")
    # A run another developer started on an agent they cannot (or no longer) see: still theirs.
    started = make_run(private, plain_user, status="succeeded")

    owner = client_for(developer)
    ids = {r["id"] for r in owner.get(f"{AGENTS}/runs").json()["results"]}
    assert ids == {str(mine.pk), str(theirs.pk)}
    body = owner.get(f"{AGENTS}/runs/{mine.pk}").json()
    assert [(s["seq"], s["kind"]) for s in body["steps"]] == [(1, "llm"), (2, "tool")]
    assert body["version"] == 1 and body["agent_name"] == agent.name and body["user"] == developer.username
    assert "steps" not in owner.get(f"{AGENTS}/runs").json()["results"][0]
    assert_problem(owner.get(f"{AGENTS}/runs/{hidden.pk}"), 404)

    assert [r["id"] for r in owner.get(f"{AGENTS}/runs?status=failed").json()["results"]] == [str(theirs.pk)]
    assert [
        r["id"] for r in owner.get(f"{AGENTS}/runs?conversation={mine.conversation_id}").json()["results"]
    ] == [str(mine.pk)]
    assert owner.get(f"{AGENTS}/runs?agent={private.pk}").json()["results"] == []

    user = client_for(plain_user)
    ids = {r["id"] for r in user.get(f"{AGENTS}/runs").json()["results"]}
    assert ids == {str(theirs.pk), str(started.pk)}  # sharing the agent does not share others' runs
    assert_problem(client_for(other_developer).get(f"{AGENTS}/runs/{mine.pk}"), 404)
    assert len(client_for(admin_user).get(f"{AGENTS}/runs").json()["results"]) == 4


def test_runs_list_query_count_is_constant(client_for, developer):
    agent = deployed(developer)
    make_run(agent, developer)
    client = client_for(developer)
    with CaptureQueriesContext(connection) as few:
        assert client.get(f"{AGENTS}/runs").status_code == 200
    for _ in range(5):
        make_run(agent, developer)
    with CaptureQueriesContext(connection) as many:
        assert client.get(f"{AGENTS}/runs").status_code == 200
    assert len(few) == len(many)


def test_conversations_of_an_agent(client_for, developer, plain_user, other_developer, admin_user):
    agent = deployed(developer)
    object_share(obj=agent, users=[plain_user], actions=["use"])
    own = Conversation.objects.create(agent=agent, user=developer)
    users = Conversation.objects.create(agent=agent, user=plain_user)
    Conversation.objects.create(agent=deployed(developer), user=developer)  # another agent
    url = f"{AGENTS}/{agent.pk}/conversations"

    assert {c["id"] for c in client_for(developer).get(url).json()["results"]} == {str(own.pk), str(users.pk)}
    body = client_for(plain_user).get(url).json()
    assert [c["id"] for c in body["results"]] == [str(users.pk)] and body["results"][0][
        "user"
    ] == plain_user.username
    assert client_for(admin_user).get(url).json()["count"] == 2
    assert_problem(client_for(other_developer).get(url), 404)


def test_view_share_does_not_open_conversations(client_for, developer, plain_user):
    agent = deployed(developer)
    object_share(obj=agent, users=[plain_user], actions=["view"])
    assert_problem(client_for(plain_user).get(f"{AGENTS}/{agent.pk}/conversations"), 403)


def test_conversation_and_its_messages(client_for, developer, plain_user, other_developer):
    agent = deployed(developer)
    object_share(obj=agent, users=[plain_user], actions=["use"])
    conversation = Conversation.objects.create(agent=agent, user=plain_user, title="hello")
    for seq, role in [(3, "assistant"), (1, "user"), (2, "assistant"), (4, "user")]:
        Message.objects.create(conversation=conversation, seq=seq, role=role, content=f"m{seq}")
    url = f"{AGENTS}/conversations/{conversation.pk}"

    user = client_for(plain_user)
    assert user.get(url).json()["title"] == "hello"
    page = user.get(f"{url}/messages?page_size=3").json()
    assert page["count"] == 4 and [m["seq"] for m in page["results"]] == [1, 2, 3]
    assert [m["content"] for m in user.get(f"{url}/messages?page=2&page_size=3").json()["results"]] == ["m4"]
    assert client_for(developer).get(f"{url}/messages").json()["count"] == 4  # the agent's owner

    stranger = client_for(other_developer)
    assert_problem(stranger.get(url), 404)
    assert_problem(stranger.get(f"{url}/messages"), 404)
    other_users = Conversation.objects.create(agent=agent, user=developer)
    assert_problem(user.get(f"{AGENTS}/conversations/{other_users.pk}"), 404)
