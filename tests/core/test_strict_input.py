"""Unknown fields in a write body are a 400 naming the field; declared read-only fields are not."""

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
from rest_framework import serializers

from agentmesh.core.exceptions import flatten_errors
from agentmesh.core.serializers import StrictFieldsMixin, StrictSerializer
from agents.models import Agent
from agents.services import agent_deploy
from masterdata.models import Skill
from tests.agents.factories import make_agent, make_deployed_tool, make_model
from tests.api_base import assert_problem
from tests.workflows.conftest import linear, transform
from tools.models import Tool
from workflows.models import Workflow

pytestmark = pytest.mark.django_db

WORKFLOW = linear(transform("a", "{{ inputs.n }}"), outputs={"n": "{{ steps.a.output }}"})


def assert_unknown(response, field: str) -> dict:
    body = assert_problem(response, 400, field)
    assert {"field": field, "code": "unknown_field", "message": "Unknown field."} in body["errors"], body
    assert field in body["detail"]
    return body


@pytest.mark.parametrize(
    ("url", "model", "payload"),
    [
        (
            "/api/v1/tools",
            Tool,
            lambda user: {"name": "calc", "type": "builtin", "config": {"function": "calculator"}},
        ),
        ("/api/v1/agents", Agent, lambda user: {"name": "helper", "model": str(make_model(user).pk)}),
        ("/api/v1/workflows", Workflow, lambda user: {"name": "wf", "definition": WORKFLOW}),
        ("/api/v1/master-data/skills", Skill, lambda user: {"name": "Translate", "category": "language"}),
    ],
    ids=["tool", "agent", "workflow", "skill"],
)
def test_create_with_a_misspelt_field_is_400_and_creates_nothing(client_for, developer, url, model, payload):
    client = client_for(developer)
    body = {**payload(developer), "descriptoin": "typo of description"}
    assert_unknown(client.post(url, body, format="json"), "descriptoin")
    assert not model.objects.exists()
    # The same body without the typo is fine.
    del body["descriptoin"]
    assert client.post(url, body, format="json").status_code == 201


def test_every_unknown_field_is_named_along_with_other_errors(client_for, developer):
    response = client_for(developer).post(
        "/api/v1/tools", {"name": ["not a string"], "typ": "builtin", "colour": "red"}, format="json"
    )
    body = assert_problem(response, 400)
    by_field = {e["field"]: e["code"] for e in body["errors"]}
    assert by_field["typ"] == by_field["colour"] == "unknown_field"
    assert "name" in by_field


def test_update_names_the_unknown_field(client_for, developer):
    tool = make_deployed_tool(developer)
    client = client_for(developer)
    assert_unknown(client.patch(f"/api/v1/tools/{tool.pk}", {"desc": "x"}, format="json"), "desc")
    tool.refresh_from_db()
    assert tool.description != "x"


def test_what_a_get_returns_can_be_sent_back(client_for, developer):
    """Read-only fields (id, owner, created_at, status …) in a body are accepted and ignored."""
    client = client_for(developer)
    created = client.post("/api/v1/workflows", {"name": "wf", "definition": WORKFLOW}, format="json").json()
    fetched = client.get(f"/api/v1/workflows/{created['id']}").json()
    fetched["description"] = "changed"
    fetched["id"] = "00000000-0000-0000-0000-000000000000"
    response = client.put(f"/api/v1/workflows/{created['id']}", fetched, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["description"] == "changed" and response.json()["id"] == created["id"]

    tool = client.post(
        "/api/v1/tools",
        {"name": "calc", "type": "builtin", "config": {"function": "calculator"}},
        format="json",
    ).json()
    response = client.put(f"/api/v1/tools/{tool['id']}", {**tool, "description": "adds"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["owner"] == developer.username


def test_registration_refuses_unknown_fields(api_client):
    payload = {
        "username": "newbie",
        "email": "n@example.com",
        "password": "s3cure-Passw0rd!",
        "is_staff": True,
    }
    assert_unknown(api_client.post("/api/v1/auth/register", payload, format="json"), "is_staff")


def test_login_refuses_unknown_fields(api_client, developer):
    payload = {"username": developer.username, "password": "s3cure-Passw0rd!", "remember": True}
    assert_unknown(api_client.post("/api/v1/auth/login", payload, format="json"), "remember")


def test_custom_action_inputs_are_strict(client_for, developer):
    client = client_for(developer)
    tool = make_deployed_tool(developer)
    response = client.post(f"/api/v1/tools/{tool.pk}/execute", {"args": {"expression": "1+1"}}, format="json")
    assert_unknown(response, "args")
    # The same call spelt right runs.
    response = client.post(
        f"/api/v1/tools/{tool.pk}/execute", {"arguments": {"expression": "1+1"}}, format="json"
    )
    assert response.status_code == 200, response.json()

    workflow = client.post("/api/v1/workflows", {"name": "wf", "definition": WORKFLOW}, format="json").json()
    response = client.post(
        f"/api/v1/workflows/{workflow['id']}/execute", {"input": {"n": 1}, "wait": True}, format="json"
    )
    assert_unknown(response, "input")


def test_interact_refuses_unknown_fields(client_for, developer):
    agent = make_agent(developer)
    version, _ = agent_deploy(agent=agent, actor=developer)
    assert version is not None
    response = client_for(developer).post(
        f"/api/v1/agents/{agent.pk}/interact", {"input": "hi", "temprature": 0.1}, format="json"
    )
    assert_unknown(response, "temprature")
    response = client_for(developer).post(
        f"/api/v1/agents/{agent.pk}/interact", {"input": "hi"}, format="json"
    )
    assert response.status_code == 200, response.json()


def test_share_refuses_unknown_fields(client_for, developer, other_developer):
    tool = make_deployed_tool(developer)
    response = client_for(developer).post(
        f"/api/v1/tools/{tool.pk}/share",
        {"users": [other_developer.username], "action": ["use"]},
        format="json",
    )
    assert_unknown(response, "action")


def test_posted_events_refuse_unknown_fields(client_for, developer):
    response = client_for(developer).post(
        "/api/v1/observability/events", {"type": "app.started", "severity": "info"}, format="json"
    )
    assert_unknown(response, "severity")


def test_nested_serializers_and_list_items_name_the_path():
    class Item(StrictSerializer):
        name = serializers.CharField()

    class Order(StrictSerializer):
        id = serializers.UUIDField(read_only=True)
        items = Item(many=True)
        shipping = Item(required=False)

    data = {
        "id": "ignored",
        "items": [{"name": "a"}, {"name": "b", "qty": 2}],
        "shipping": {"name": "x", "y": 1},
    }
    order = Order(data=data)
    assert not order.is_valid()
    assert {(e["field"], e["code"]) for e in flatten_errors(order.errors)} == {
        ("items[1].qty", "unknown_field"),
        ("shipping.y", "unknown_field"),
    }
    assert Order(data={"id": "ignored", "items": [{"name": "a"}]}).is_valid()


# Serializers of query parameters (not bodies): other parameters (page, cursor …) come along.
QUERY_SERIALIZERS = {"observability.api.serializers.MetricsQuerySerializer"}
API_MODULES = [
    "agentmesh.core.serializers",
    "agentmesh.accounts.api.serializers",
    "agents.api.serializers",
    "agents.api.interact",
    "masterdata.api.serializers",
    "observability.api.serializers",
    "tools.api.serializers",
    "workflows.api.serializers",
    # the system app has one serializer module per area: system/api/<area>_serializers.py
    *(
        f"system.api.{m.name}"
        for m in pkgutil.iter_modules([str(Path(__file__).resolve().parents[2] / "system" / "api")])
        if m.name.endswith("serializers")
    ),
]


def test_every_api_serializer_is_strict():
    loose = []
    for module_name in API_MODULES:
        module = importlib.import_module(module_name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if (
                cls.__module__ == module_name
                and issubclass(cls, serializers.Serializer)
                and not issubclass(cls, StrictFieldsMixin)
                and f"{module_name}.{name}" not in QUERY_SERIALIZERS
            ):
                loose.append(f"{module_name}.{name}")
    assert loose == [], "derive these from StrictSerializer / StrictModelSerializer"
