from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from observability import services
from observability.models import ObservabilityEvent
from tests.api_base import assert_problem

pytestmark = pytest.mark.django_db

EVENTS = reverse("observability-api:event-list")


def test_post_one_event_sets_actor_and_returns_it(client_for, developer):
    response = client_for(developer).post(
        EVENTS,
        {
            "type": "agent.deployed",
            "level": "info",
            "resource_type": "agents.agent",
            "resource_id": "a1",
            "payload": {"version": 3},
        },
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["type"] == "agent.deployed"
    assert body["actor"] == developer.username
    assert ObservabilityEvent.objects.get(pk=body["id"]).actor_id == developer.pk


def test_post_invalid_single_event_is_400_naming_the_field(client_for, developer):
    assert_problem(client_for(developer).post(EVENTS, {"type": "Not Dotted!"}), 400, "type")
    assert_problem(client_for(developer).post(EVENTS, {"type": "a.b", "level": "loud"}), 400, "level")


def test_anonymous_is_401(api_client):
    assert_problem(api_client.get(EVENTS), 401)
    assert_problem(api_client.post(EVENTS, {"type": "a.b"}), 401)


def test_batch_with_invalid_items_is_207_and_records_the_valid_ones(client_for, developer):
    batch = [
        {"type": "tool.called", "payload": {"n": 1}},
        {"type": "BAD TYPE"},
        {"type": "tool.called", "level": "nope"},
        {"type": "tool.called", "trace_id": "xyz"},
        "not an object",
        {"type": "tool.called", "timestamp": "2024-01-02T03:04:05Z"},
    ]
    response = client_for(developer).post(EVENTS, batch, format="json")
    assert response.status_code == 207, response.json()
    body = response.json()
    assert (body["created"], body["failed"]) == (2, 4)
    by_index = {r["index"]: r for r in body["results"]}
    assert [by_index[i]["status"] for i in range(6)] == [201, 400, 400, 400, 400, 201]
    assert by_index[1]["errors"][0]["field"] == "type"
    assert by_index[2]["errors"][0]["field"] == "level"
    assert by_index[3]["errors"][0]["field"] == "trace_id"
    assert ObservabilityEvent.objects.filter(type="tool.called", actor=developer).count() == 2
    dated = ObservabilityEvent.objects.get(pk=by_index[5]["id"])
    assert dated.timestamp.year == 2024


def test_full_valid_batch_is_201(client_for, developer):
    batch = [{"type": "bulk.item", "payload": {"i": i}} for i in range(1000)]
    response = client_for(developer).post(EVENTS, batch, format="json")
    assert response.status_code == 201
    assert response.json()["created"] == 1000
    assert ObservabilityEvent.objects.filter(type="bulk.item").count() == 1000


def test_batch_over_limit_is_400(client_for, developer):
    batch = [{"type": "bulk.item"}] * 1001
    assert_problem(client_for(developer).post(EVENTS, batch, format="json"), 400, "events")
    assert_problem(client_for(developer).post(EVENTS, [], format="json"), 400, "events")


def _ids(response):
    assert response.status_code == 200, response.json()
    return [e["id"] for e in response.json()["results"]]


def test_visibility_own_events_admin_all(client_for, developer, other_developer, admin_user):
    mine = services.event_record(type="x.mine", actor=developer)
    theirs = services.event_record(type="x.theirs", actor=other_developer)
    system = services.event_record(type="x.system")
    assert _ids(client_for(developer).get(EVENTS)) == [str(mine.id)]
    assert set(_ids(client_for(admin_user).get(EVENTS))) >= {str(mine.id), str(theirs.id), str(system.id)}


def test_filters(client_for, admin_user, developer):
    now = timezone.now()
    a = services.event_record(
        type="workflow.execution.failed",
        level="error",
        actor=developer,
        resource_type="workflows.workflow",
        resource_id="w1",
    )
    b = services.event_record(
        type="workflow.execution.started", actor=admin_user, timestamp=now - timedelta(hours=2)
    )
    c = services.event_record(type="agent.deployed", level="warning")
    ObservabilityEvent.objects.filter(pk=c.pk).update(trace_id="ab" * 16)
    client = client_for(admin_user)

    def ids(**query):
        return set(_ids(client.get(EVENTS, query)))

    assert ids(type="workflow.") == {str(a.id), str(b.id)}
    assert ids(type="workflow.execution.failed") == {str(a.id)}
    assert ids(level="error") == {str(a.id)}
    assert ids(level=["error", "warning"]) == {str(a.id), str(c.id)}
    assert ids(resource_type="workflows.workflow", resource_id="w1") == {str(a.id)}
    assert ids(actor=developer.pk) == {str(a.id)}
    assert ids(since=(now - timedelta(hours=1)).isoformat()) == {str(a.id), str(c.id)}
    assert ids(until=(now - timedelta(hours=1)).isoformat()) == {str(b.id)}
    assert ids(trace_id="ab" * 16) == {str(c.id)}
    assert_problem(client.get(EVENTS, {"level": "loud"}), 400, "level")


def test_cursor_pagination_newest_first_and_stable_under_inserts(client_for, developer):
    base = timezone.now() - timedelta(minutes=10)
    created = [
        services.event_record(type="page.item", actor=developer, timestamp=base + timedelta(seconds=i))
        for i in range(5)
    ]
    client = client_for(developer)
    first = client.get(EVENTS, {"page_size": 2}).json()
    assert [e["id"] for e in first["results"]] == [str(created[4].id), str(created[3].id)]
    services.event_record(type="page.item", actor=developer)  # a newer event arrives meanwhile
    second = client.get(first["next"]).json()
    assert [e["id"] for e in second["results"]] == [str(created[2].id), str(created[1].id)]
    third = client.get(second["next"]).json()
    assert [e["id"] for e in third["results"]] == [str(created[0].id)]
    assert third["next"] is None
