"""Runs and executions are visible to their caller, the resource's owner and admins: sharing
a tool, agent or workflow shares its use, not what other users did with it."""

import pytest

from agents.services import agent_deploy
from tests.agents.factories import make_agent
from tests.api_base import assert_problem

API = "/api/v1"


@pytest.fixture
def people(developer, make_user, admin_user):
    return {"owner": developer, "b": make_user("user"), "c": make_user("user"), "admin": admin_user}


def share(client_for, owner, path, *users):
    response = client_for(owner).post(
        f"{path}/share", {"users": [u.username for u in users], "actions": ["view", "use"]}, format="json"
    )
    assert response.status_code == 200, response.json()


def check_visibility(client_for, people, *, detail, listing, b_id, c_id, extra_paths=()):
    """C sees only its own; B's record is a 404 for C (detail and its actions); the owner sees
    both; the admin sees all."""
    c = client_for(people["c"])
    assert_problem(c.get(f"{detail}/{b_id}"), 404)
    for suffix, method in extra_paths:
        assert_problem(getattr(c, method)(f"{detail}/{b_id}/{suffix}"), 404)
    assert c.get(f"{detail}/{c_id}").status_code == 200
    assert {r["id"] for r in c.get(listing).json()["results"]} == {c_id}
    b = client_for(people["b"])
    assert {r["id"] for r in b.get(listing).json()["results"]} == {b_id}
    for who in ("owner", "admin"):
        client = client_for(people[who])
        assert {r["id"] for r in client.get(listing).json()["results"]} >= {b_id, c_id}
        assert client.get(f"{detail}/{b_id}").status_code == 200


@pytest.mark.django_db
def test_tool_executions(client_for, people):
    from tools import services

    tool = services.tool_create(
        owner=people["owner"], name="calc", type="builtin", config={"function": "calculator"}
    )
    services.tool_validate(tool=tool, actor=people["owner"])
    services.tool_deploy(tool=tool, actor=people["owner"])
    share(client_for, people["owner"], f"{API}/tools/{tool.pk}", people["b"], people["c"])
    ids = {}
    for who, expression in (("b", "1+1"), ("c", "2+2")):
        response = client_for(people[who]).post(
            f"{API}/tools/{tool.pk}/execute", {"arguments": {"expression": expression}}, format="json"
        )
        assert response.status_code == 200, response.json()
        ids[who] = response.json()["id"]
    check_visibility(
        client_for,
        people,
        detail=f"{API}/tools/executions",
        listing=f"{API}/tools/executions?tool={tool.pk}",
        b_id=ids["b"],
        c_id=ids["c"],
    )


@pytest.mark.django_db
def test_workflow_executions(client_for, people):
    from workflows import services

    definition = {"nodes": [{"id": "a", "type": "transform", "config": {"template": "{{ inputs.n }}"}}]}
    workflow = services.workflow_create(owner=people["owner"], name="echo", definition=definition)
    share(client_for, people["owner"], f"{API}/workflows/{workflow.pk}", people["b"], people["c"])
    ids = {}
    for who, n in (("b", 1), ("c", 2)):
        response = client_for(people[who]).post(
            f"{API}/workflows/{workflow.pk}/execute", {"inputs": {"n": n}, "mode": "sync"}, format="json"
        )
        assert response.status_code in (200, 202), response.json()
        ids[who] = response.json()["id"]
    for listing in (f"{API}/workflows/executions", f"{API}/workflows/{workflow.pk}/executions"):
        check_visibility(
            client_for,
            people,
            detail=f"{API}/workflows/executions",
            listing=listing,
            b_id=ids["b"],
            c_id=ids["c"],
            extra_paths=[("events", "get"), ("cancel", "post"), ("retry", "post")],
        )


@pytest.mark.django_db
def test_agent_runs_and_conversations(client_for, people):
    owner = people["owner"]
    agent = make_agent(owner, name="helper")
    version, _ = agent_deploy(agent=agent, actor=owner)
    assert version is not None
    share(client_for, owner, f"{API}/agents/{agent.pk}", people["b"], people["c"])
    runs, conversations = {}, {}
    for who in ("b", "c"):
        response = client_for(people[who]).post(
            f"{API}/agents/{agent.pk}/interact", {"input": f"{who}'s secret"}, format="json"
        )
        assert response.status_code == 200, response.json()
        runs[who], conversations[who] = response.json()["id"], response.json()["conversation"]
    check_visibility(
        client_for,
        people,
        detail=f"{API}/agents/runs",
        listing=f"{API}/agents/runs?agent={agent.pk}",
        b_id=runs["b"],
        c_id=runs["c"],
        extra_paths=[("cancel", "post")],
    )
    c = client_for(people["c"])
    assert_problem(c.get(f"{API}/agents/conversations/{conversations['b']}"), 404)
    assert_problem(c.get(f"{API}/agents/conversations/{conversations['b']}/messages"), 404)
    listed = c.get(f"{API}/agents/{agent.pk}/conversations").json()["results"]
    assert [x["id"] for x in listed] == [conversations["c"]]
    listed = client_for(owner).get(f"{API}/agents/{agent.pk}/conversations").json()["results"]
    assert {x["id"] for x in listed} == set(conversations.values())
