"""The admin's display helpers: what an operator reads instead of raw floats, decimals and ids,
and the search by whole or short id."""

import uuid
from decimal import Decimal

import pytest

from agentmesh.core.admin_display import human_duration, money, pretty_json, short_id, uuid_lookup


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (None, "—"),
        (-1, "—"),
        (0.4, "0.4 ms"),
        (3.25, "3.2 ms"),
        (850, "850 ms"),
        (7914.103000075556, "7.9 s"),
        (59_940, "59.9 s"),
        (123_000, "2 min 3 s"),
        (192_000, "3 min 12 s"),
        (120_000, "2 min"),
        (3_840_000, "1 h 4 min"),
        (90_000_000, "1 d 1 h"),
    ],
)
def test_human_duration(ms, text):
    assert human_duration(ms) == text


@pytest.mark.parametrize(
    ("usd", "text"),
    [
        (None, "—"),  # not recorded
        (0, "$0"),  # recorded, and free
        (Decimal("0.00000000"), "$0"),
        (Decimal("0.00120000"), "$0.0012"),
        (Decimal("0.00123456"), "$0.0012"),
        (0.0042, "$0.0042"),
        ("0.000042", "$0.000042"),
        (Decimal("0.15"), "$0.15"),
        (Decimal("0.04000000"), "$0.04"),
        (Decimal("0.00100000"), "$0.001"),
        (Decimal("0.00000003"), "$0.00000003"),
        (Decimal("0.000000001"), "< $0.00000001"),
        (12.5, "$12.50"),
        (Decimal("1234.5"), "$1,234.50"),
        (Decimal("-0.5"), "-$0.50"),
    ],
)
def test_money(usd, text):
    assert money(usd) == text


def test_short_id_keeps_the_full_id_on_hover_and_escapes():
    html = short_id(uuid.UUID("0b4f5a1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b"))
    assert ">0b4f5a1e<" in html and 'title="0b4f5a1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b"' in html
    linked = short_id("abc", url="/admin/x/?a=1&b=2")
    assert 'href="/admin/x/?a=1&amp;b=2"' in linked and ">abc<" in linked
    assert ">req-1<" in short_id("req-1")  # hardly longer than a short id: shown whole
    assert short_id(None) == "—" and short_id("") == "—"


def test_pretty_json_is_indented_escaped_and_collapsible():
    html = pretty_json({"html": "<script>alert(1)</script>", "n": 1})
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "\n  &quot;n&quot;: 1" in html and html.startswith('<details class="json" open>')
    assert html.index("html") < html.index("&quot;n&quot;")  # the recorded key order
    big = pretty_json({"rows": list(range(200))})
    assert big.startswith('<details class="json">')  # long values start collapsed
    assert pretty_json(None) == "—"
    assert pretty_json({}) == "{}" and pretty_json([]) == "[]"  # empty is not missing


def _children(q):
    return q.children if q is not None else None


def test_id_search_terms_for_a_uuid_field():
    from agents.models import AgentRun

    whole = uuid.uuid4()
    for spelling in (str(whole), str(whole).upper(), whole.hex, whole.hex.upper()):
        assert _children(uuid_lookup(AgentRun, "pk", spelling)) == [("pk", whole)]
    assert _children(uuid_lookup(AgentRun, "conversation_id", str(whole))) == [("conversation__id", whole)]
    assert _children(uuid_lookup(AgentRun, "pk", "0F1E2D3C4B")) == [("pk__startswith", "0f1e2d3c-4b")]
    assert _children(uuid_lookup(AgentRun, "pk", "0f1e2d3c")) == [("pk__startswith", "0f1e2d3c")]
    assert uuid_lookup(AgentRun, "pk", "admin-dataset") is None
    assert uuid_lookup(AgentRun, "pk", "abc") is None  # too short to mean an id
    assert uuid_lookup(AgentRun, "pk", "0" * 33) is None


def test_id_search_terms_for_text_and_integer_fields():
    from observability.models import LogRecord
    from tools.models import ToolExecution

    whole = uuid.uuid4()
    assert _children(uuid_lookup(ToolExecution, "caller_ref", str(whole).upper())) == [
        ("caller_ref", str(whole))
    ]
    assert _children(uuid_lookup(ToolExecution, "caller_ref", "0F1E2D3C")) == [
        ("caller_ref__startswith", "0f1e2d3c")
    ]
    assert uuid_lookup(LogRecord, "pk", str(whole)) is None  # an integer key has no id text


@pytest.mark.django_db
def test_a_whole_id_searches_by_equality_and_other_terms_also_search_as_usual(rf, admin_user):
    """A dashed whole id is an equality on the id fields only (no LIKE over every column); a
    32-digit term (a trace id, or an id without dashes) and a short id add the usual search."""
    from django.contrib import admin

    from agents.models import AgentRun

    model_admin = admin.site._registry[AgentRun]
    request = rf.get("/admin/agents/agentrun/")
    request.user = admin_user
    queryset = AgentRun.objects.all()

    def sql(term):
        results, _ = model_admin.get_search_results(request, queryset, term)
        return str(results.query).upper()

    whole = uuid.uuid4()
    assert "LIKE" not in sql(str(whole)) and "LIKE" not in sql(str(whole).upper())
    assert "LIKE" in sql(whole.hex)  # may be a trace id: the usual search too
    assert "LIKE" in sql(str(whole)[:8])
    assert "LIKE" in sql("echo-assistant")
