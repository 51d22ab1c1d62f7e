import pytest

from masterdata.constraints import CONSTRAINT_TYPES, InvalidRules, effective_limits, validate_rules
from masterdata.models import Constraint
from tests.api_base import assert_problem

from .factories import make_constraint

URL = "/api/v1/master-data/constraints"

VALID = {
    "resource_limit": {"max_turns": 8, "max_tool_calls": 20, "max_input_tokens": 8000, "timeout_seconds": 30},
    "budget": {"max_cost_usd_per_run": 0.25, "max_cost_usd_per_day": 10},
    "rate_limit": {"requests_per_minute": 60},
    "tool_policy": {"allowed_tools": ["search", "calc"], "denied_tools": ["shell"]},
    "network_policy": {"allowed_hosts": ["api.example.com"], "denied_hosts": ["169.254.169.254"]},
    "content_policy": {"blocked_terms": ["password"], "max_input_chars": 4000},
}

INVALID = {  # (rules, field named in the 400)
    "resource_limit": ({"max_turns": 0}, "rules.max_turns"),
    "budget": ({"max_cost_usd_per_run": -1}, "rules.max_cost_usd_per_run"),
    "rate_limit": ({}, "rules"),
    "tool_policy": ({"allowed_tools": "search"}, "rules.allowed_tools"),
    "network_policy": ({"allowed_hosts": ["a"], "bogus": 1}, "rules.bogus"),
    "content_policy": ({"max_input_chars": "long"}, "rules.max_input_chars"),
}


def test_every_type_has_a_valid_and_an_invalid_case():
    assert set(VALID) == set(INVALID) == set(CONSTRAINT_TYPES)


@pytest.mark.parametrize("type_name", sorted(VALID))
def test_type_accepts_valid_rules(client_for, developer, type_name):
    response = client_for(developer).post(
        URL, {"name": f"c-{type_name}", "type": type_name, "rules": VALID[type_name]}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["rules"] == VALID[type_name]


@pytest.mark.parametrize("type_name", sorted(INVALID))
def test_type_rejects_invalid_rules_naming_the_field(client_for, developer, type_name):
    rules, field = INVALID[type_name]
    response = client_for(developer).post(
        URL, {"name": "c", "type": type_name, "rules": rules}, format="json"
    )
    assert_problem(response, 400, field)
    assert not Constraint.objects.exists()


def test_rate_limit_missing_required_names_the_property():
    with pytest.raises(InvalidRules) as caught:
        validate_rules("rate_limit", {"burst": 3})
    assert caught.value.field in {"rules.requests_per_minute", "rules.burst"}
    with pytest.raises(InvalidRules) as caught:
        validate_rules("rate_limit", {})
    assert caught.value.field == "rules"


def test_unknown_type_is_400_naming_type(client_for, developer):
    response = client_for(developer).post(URL, {"name": "c", "type": "vibes", "rules": {}}, format="json")
    assert_problem(response, 400, "type")


def test_rules_must_be_an_object(client_for, developer):
    response = client_for(developer).post(
        URL, {"name": "c", "type": "budget", "rules": [1, 2]}, format="json"
    )
    assert_problem(response, 400, "rules")


def test_update_revalidates_rules_against_the_new_type(client_for, developer):
    constraint = make_constraint(developer, rules={"max_turns": 3})
    response = client_for(developer).patch(f"{URL}/{constraint.pk}", {"type": "budget"}, format="json")
    assert_problem(response, 400, "rules.max_turns")
    constraint.refresh_from_db()
    assert constraint.type == "resource_limit"


def test_duplicate_name_is_400(client_for, developer):
    make_constraint(developer, name="Same")
    response = client_for(developer).post(
        URL, {"name": "Same", "type": "rate_limit", "rules": {"requests_per_minute": 1}}, format="json"
    )
    assert_problem(response, 400, "name")


def test_types_endpoint_lists_every_type_with_schema(client_for, plain_user):
    response = client_for(plain_user).get(f"{URL}/types")
    assert response.status_code == 200
    body = {item["type"]: item for item in response.json()}
    assert set(body) == set(CONSTRAINT_TYPES)
    assert body["resource_limit"]["schema"]["properties"]["max_turns"] == {"type": "integer", "minimum": 1}
    assert body["budget"]["label"] and body["budget"]["description"]


def test_filter_by_type_and_active(client_for, developer):
    make_constraint(developer, name="a")
    make_constraint(developer, name="b", type="rate_limit", rules={"requests_per_minute": 5}, is_active=False)
    client = client_for(developer)
    assert [c["name"] for c in client.get(f"{URL}?type=rate_limit").json()["results"]] == ["b"]
    assert [c["name"] for c in client.get(f"{URL}?is_active=true").json()["results"]] == ["a"]
    assert_problem(client.get(f"{URL}?type=vibes"), 400, "type")


# --- effective limits ---------------------------------------------------------------------
def test_effective_limits_most_restrictive_wins():
    limits = effective_limits(
        [
            {"type": "resource_limit", "rules": {"max_turns": 10, "timeout_seconds": 60}},
            {"type": "resource_limit", "rules": {"max_turns": 4, "max_tool_calls": 7}},
            {"type": "budget", "rules": {"max_cost_usd_per_run": 1.5}},
            {"type": "budget", "rules": {"max_cost_usd_per_run": 0.5, "max_cost_usd_per_day": 3}},
            {"type": "tool_policy", "rules": {"allowed_tools": ["a", "b", "c"], "denied_tools": ["x"]}},
            {"type": "tool_policy", "rules": {"allowed_tools": ["b", "c", "d"], "denied_tools": ["c"]}},
            {"type": "network_policy", "rules": {"denied_hosts": ["evil.test"]}},
            {"type": "content_policy", "rules": {"blocked_terms": ["foo"], "max_input_chars": 100}},
            {"type": "content_policy", "rules": {"blocked_terms": ["bar", "foo"]}},
            {"type": "rate_limit", "rules": {"requests_per_minute": 30}, "is_active": False},
        ]
    )
    assert limits["max_turns"] == 4
    assert limits["max_tool_calls"] == 7
    assert limits["timeout_seconds"] == 60
    assert limits["max_cost_usd_per_run"] == 0.5
    assert limits["max_cost_usd_per_day"] == 3
    assert limits["allowed_tools"] == ["b"]  # intersection {b, c}, minus denied c
    assert limits["denied_tools"] == ["c", "x"]
    assert limits["allowed_hosts"] is None  # no allow list: unrestricted
    assert limits["denied_hosts"] == ["evil.test"]
    assert limits["blocked_terms"] == ["bar", "foo"]
    assert limits["max_input_chars"] == 100
    assert limits["requests_per_minute"] is None  # inactive constraint skipped
    assert limits["max_output_tokens"] is None


def test_effective_limits_of_nothing_is_unlimited():
    limits = effective_limits([])
    assert limits["max_turns"] is None and limits["allowed_tools"] is None and limits["denied_tools"] == []


def test_effective_limits_accepts_model_instances(developer):
    rows = [
        make_constraint(developer, name="a", rules={"max_turns": 9}),
        make_constraint(developer, name="b", rules={"max_turns": 2}),
        make_constraint(developer, name="c", type="tool_policy", rules={"allowed_tools": []}),
    ]
    limits = effective_limits(rows)
    assert limits["max_turns"] == 2
    assert limits["allowed_tools"] == []  # an empty allow list allows nothing
