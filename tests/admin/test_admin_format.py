"""The admin's list helpers: short ids, human durations and costs, search by (short) id."""

import uuid

import pytest

from agentmesh.core.admin_format import _uuid_lookup, human_duration, money, pretty_json, short_id


def test_short_id_keeps_the_full_one_on_hover():
    value = uuid.UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
    html = str(short_id(value))
    assert 'title="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"' in html and ">0f1e2d3c…<" in html
    assert short_id(None) == "-" and short_id("req-1") == "req-1"


@pytest.mark.parametrize(
    ("ms", "shown"),
    [(None, "-"), (3.25, "3.2 ms"), (850, "850 ms"), (7914.103000075556, "7.9 s"), (192_000, "3 min 12 s")],
)
def test_durations_read_like_a_person_says_them(ms, shown):
    assert human_duration(ms) == shown


@pytest.mark.parametrize(
    ("amount", "shown"),
    [(None, "-"), (0, "$0"), ("0.000042", "$0.000042"), (0.0042, "$0.0042"), (12.5, "$12.50")],
)
def test_costs_keep_their_significant_digits(amount, shown):
    assert money(amount) == shown


def test_pretty_json_is_escaped_and_collapsible():
    html = str(pretty_json({"<b>": 1}))
    assert "<details open>" in html and "&lt;b&gt;" in html
    assert pretty_json({}) == "{}"


def test_id_search_terms():
    whole = uuid.uuid4()
    assert _uuid_lookup("pk", str(whole)).children == [("pk", whole)]
    assert _uuid_lookup("pk", str(whole).upper().replace("-", "")).children == [("pk", whole)]
    assert _uuid_lookup("pk", "0F1E2D3C4B").children == [("pk__startswith", "0f1e2d3c-4b")]
    assert _uuid_lookup("pk", "admin-dataset") is None
    assert _uuid_lookup("pk", "abc") is None  # too short to mean an id
