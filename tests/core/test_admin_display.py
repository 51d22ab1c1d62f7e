"""The admin's display helpers: what an operator reads instead of raw floats, decimals and ids."""

from decimal import Decimal

import pytest

from agentmesh.core.admin_display import human_duration, money, pretty_json, short_id


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (None, "—"),
        (0.4, "0 ms"),
        (850, "850 ms"),
        (7914.103000075556, "7.9 s"),
        (59_940, "59.9 s"),
        (123_000, "2 min 3 s"),
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
        (None, "—"),
        (Decimal("0.00000000"), "—"),
        (Decimal("0.00120000"), "$0.0012"),
        (Decimal("0.00123456"), "$0.0012"),
        (Decimal("0.15"), "$0.15"),
        (Decimal("0.04000000"), "$0.04"),
        (Decimal("0.00100000"), "$0.001"),
        (Decimal("0.00000003"), "$0.00000003"),
        (Decimal("1234.5"), "$1,234.50"),
    ],
)
def test_money(usd, text):
    assert money(usd) == text


def test_short_id_keeps_the_full_id_on_hover_and_escapes():
    html = short_id("0b4f5a1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b")
    assert ">0b4f5a1e<" in html and 'title="0b4f5a1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b"' in html
    linked = short_id("abc", url="/admin/x/?a=1&b=2")
    assert 'href="/admin/x/?a=1&amp;b=2"' in linked
    assert short_id(None) == "—"


def test_pretty_json_is_indented_escaped_and_collapsible():
    html = pretty_json({"html": "<script>alert(1)</script>", "n": 1})
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "\n  &quot;n&quot;: 1" in html and html.startswith('<details class="json" open>')
    big = pretty_json({"rows": list(range(200))})
    assert big.startswith('<details class="json">')  # long values start collapsed
    assert pretty_json(None) == "—" and pretty_json({}) == "—"
