"""Request bodies are JSON only, nested at most MAX_JSON_DEPTH levels; query filters validate
their values (400 naming the parameter, never a 500)."""

import pytest
from django.db import connection

from agentmesh.core.parsers import json_depth
from tests.api_base import assert_problem

WIDGETS = "/api/v1/test/widgets"


def nested(levels: int) -> str:
    return '{"name": "w", "category": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"


def test_json_depth_counts_brackets_outside_strings():
    assert json_depth('"[[[["') == 0
    assert json_depth('{"a": [1, {"b": "]]]{{{"}]}') == 3
    assert json_depth("[" * 10_000 + "]" * 10_000, limit=64) == 65


def test_ten_thousand_levels_is_a_400_not_a_500(client_for, developer):
    response = client_for(developer).post(
        WIDGETS, "[" * 10_000 + "]" * 10_000, content_type="application/json"
    )
    body = assert_problem(response, 400)
    assert "nested deeper than 64" in body["detail"]


def test_65_levels_is_a_400_and_64_is_parsed(client_for, developer, settings):
    client = client_for(developer)
    assert_problem(client.post(WIDGETS, nested(65), content_type="application/json"), 400)
    # 64 levels parse; the serializer then refuses the list for a text field (by name).
    assert_problem(client.post(WIDGETS, nested(64), content_type="application/json"), 400, "category")
    settings.MAX_JSON_DEPTH = 3
    assert_problem(client.post(WIDGETS, nested(4), content_type="application/json"), 400)


def test_form_and_multipart_bodies_are_415(client_for, developer):
    client = client_for(developer)
    response = client.post(WIDGETS, "name=w", content_type="application/x-www-form-urlencoded")
    assert_problem(response, 415)
    assert_problem(client.post(WIDGETS, {"name": "w"}, format="multipart"), 415)
    assert client.post(WIDGETS, {"name": "w"}, format="json").status_code == 201


def test_nan_is_refused(client_for, developer):
    response = client_for(developer).post(
        "/api/v1/tools", '{"name": "t", "timeout_seconds": NaN}', content_type="application/json"
    )
    assert_problem(response, 400)


# --- filters ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        ("/api/v1/observability/events?actor=-1.5e+265", "actor"),
        ("/api/v1/observability/events?actor=1.5", "actor"),
        ("/api/v1/observability/events?actor=99999999999999999999", "actor"),
        ("/api/v1/observability/traces?user=1e300", "user"),
        ("/api/v1/observability/traces?min_duration_ms=1e400", "min_duration_ms"),
        ("/api/v1/workflows/executions?version=9223372036854775808", "version"),
        ("/api/v1/agents/runs?agent=not-a-uuid", "agent"),
        ("/api/v1/tools/executions?tool=123", "tool"),
        ("/api/v1/observability/alerts?rule=zz", "rule"),
        ("/api/v1/tools/executions?since=yesterday", "since"),
        ("/api/v1/observability/logs?until=2026-13-45", "until"),
        ("/api/v1/observability/logs?since=0001-01-01T00:00:00%2B05:00", "since"),
        ("/api/v1/master-data/skills?is_active=maybe", "is_active"),
        ("/api/v1/tools/executions?is_test=perhaps", "is_test"),
        ("/api/v1/observability/alert-rules?enabled=2", "enabled"),
        ("/api/v1/tools?status=flying", "status"),
        ("/api/v1/tools?ordering=password", "ordering"),
        ("/api/v1/agents?ordering=-name,owner__password", "ordering"),
        ("/api/v1/test/widgets?ordering=nope", "ordering"),
    ],
)
def test_bad_filter_values_are_400_naming_the_parameter(client_for, admin_user, url, parameter):
    assert_problem(client_for(admin_user).get(url), 400, parameter)


def test_workflow_executions_of_one_workflow_validate_filters(client_for, developer):
    from workflows import services

    workflow = services.workflow_create(
        owner=developer,
        name="w",
        definition={"nodes": [{"id": "a", "type": "transform", "config": {"template": 1}}], "edges": []},
    )
    response = client_for(developer).get(f"/api/v1/workflows/{workflow.pk}/executions?version=-1e99")
    assert_problem(response, 400, "version")


def test_good_filter_values_still_filter(client_for, admin_user):
    client = client_for(admin_user)
    for url in (
        f"/api/v1/observability/events?actor={admin_user.pk}",
        "/api/v1/observability/traces?min_duration_ms=1.5",
        "/api/v1/master-data/skills?is_active=true",
        "/api/v1/master-data/skills?is_active=",
        "/api/v1/tools/executions?is_test=0",
        "/api/v1/agents?ordering=-name,created_at",
        "/api/v1/tools/executions?since=2026-01-01T00:00:00Z",
        "/api/v1/observability/events?since=2299-03-04T08:32:45-18:29",
    ):
        assert client.get(url).status_code == 200, url


def test_integer_bounds_follow_the_database(client_for, admin_user):
    _low, high = connection.ops.integer_field_range("PositiveIntegerField")
    client = client_for(admin_user)
    assert client.get(f"/api/v1/workflows/executions?version={high or 2**63 - 1}").status_code == 200
    assert_problem(
        client.get(f"/api/v1/workflows/executions?version={(high or 2**63 - 1) + 1}"), 400, "version"
    )


def test_nul_characters_in_json_strings_are_400(client_for, developer):
    client = client_for(developer)
    for body in (
        '{"type": "a.b", "payload": {"\\u0000": 1}}',
        '{"type": "a.b", "payload": {"k": ["x\\u0000"]}}',
    ):
        assert_problem(
            client.post("/api/v1/observability/events", body, content_type="application/json"), 400
        )
    # an escaped backslash followed by "u0000" is not a NUL
    ok = client.post(
        "/api/v1/observability/events",
        '{"type": "a.b", "payload": {"k": "\\\\u0000"}}',
        content_type="application/json",
    )
    assert ok.status_code == 201, ok.content
    assert ok.json()["payload"] == {"k": "\\u0000"}


@pytest.mark.django_db(transaction=True)
def test_manual_alert_with_a_dedup_key_is_counted_not_a_500(client_for, developer):
    client = client_for(developer)
    body = {"title": "disk", "dedup_key": "disk-full"}
    assert client.post("/api/v1/observability/alerts", body, format="json").status_code == 201
    again = client.post("/api/v1/observability/alerts", body, format="json")
    assert again.status_code == 200 and again.json()["occurrences"] == 2


def test_event_timestamps_with_any_offset_are_stored_in_utc(client_for, developer):
    client = client_for(developer)
    response = client.post(
        "/api/v1/observability/events",
        [{"type": "a.b", "timestamp": "2299-03-04T08:32:45-18:29"}, {"type": "a.c"}],
        format="json",
    )
    assert response.status_code == 201, response.content
    one = client.post(
        "/api/v1/observability/events",
        {"type": "a.b", "timestamp": "0001-01-01T00:00:00+05:00"},
        format="json",
    )
    assert_problem(one, 400, "timestamp")


@pytest.mark.parametrize("days", ["²", "1" * 5000, "0", "366", "-1", "1.5"])
def test_stats_days_must_be_1_to_365(client_for, developer, days):
    from tests.agents.factories import make_agent

    agent = make_agent(developer)
    assert_problem(client_for(developer).get(f"/api/v1/agents/{agent.pk}/stats", {"days": days}), 400, "days")


def test_numbers_too_large_for_a_float_are_400(client_for, developer):
    response = client_for(developer).post(
        "/api/v1/observability/events",
        '{"type": "a.b", "payload": {"x": 1e400}}',
        content_type="application/json",
    )
    assert_problem(response, 400)


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        ("/api/v1/master-data/skills/search?q=a%00b", "q"),
        ("/api/v1/tools?search=%00", "search"),
        ("/api/v1/observability/events?type=a%00", "type"),
    ],
)
def test_nul_characters_in_query_parameters_are_400(client_for, developer, url, parameter):
    assert_problem(client_for(developer).get(url), 400, parameter)
