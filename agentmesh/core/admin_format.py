"""Small admin list helpers: short ids (the full one on hover), human durations, and search by
UUID (a whole id, or the first characters a short id shows).

The formatting functions have the names and arguments of the run pages' display helpers
(agentmesh/core/admin_display.py, on another branch when this was written): once both are
merged, importing those from admin_display instead is the whole change."""

import re
import uuid

from django.db.models import Q
from django.utils.html import format_html

SHORT_ID_CHARS = 8
_HEX_PREFIX = re.compile(r"^[0-9a-fA-F-]{6,36}$")


def short_id(value) -> str:
    """The first characters of an id, the full id in the tooltip; '-' for none."""
    if value in (None, ""):
        return "-"
    text = str(value)
    if len(text) <= SHORT_ID_CHARS + 2:
        return text
    return format_html('<span title="{}" class="short-id">{}…</span>', text, text[:SHORT_ID_CHARS])


def human_duration(ms) -> str:
    """A duration in milliseconds as `850 ms`, `7.9 s`, `3 min 12 s`, `2 h 5 min`."""
    if ms is None:
        return "-"
    ms = float(ms)
    if ms < 1000:
        return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def money(value) -> str:
    """A cost in US dollars with sensible precision: `$0`, `$0.000042`, `$12.50`."""
    if value is None:
        return "-"
    amount = float(value)
    if amount == 0:
        return "$0"
    if abs(amount) < 0.000001:
        return "< $0.000001"
    if abs(amount) < 0.01:
        return "$" + f"{amount:.6f}".rstrip("0")
    return f"${amount:,.2f}"


def _uuid_lookup(field: str, term: str) -> Q | None:
    """A filter on a UUID field for `term`: the whole id (any spelling), or its first characters."""
    if not _HEX_PREFIX.match(term):
        return None
    try:
        return Q(**{field: uuid.UUID(term)})
    except ValueError:
        pass
    digits = term.replace("-", "").lower()
    if len(digits) > 32:
        return None
    # The hyphenated text form: PostgreSQL compares it as is, Django strips the hyphens where
    # UUIDs are stored as 32 hex digits (SQLite).
    text = str(uuid.UUID(digits.ljust(32, "0")))
    prefix = text[: len(digits) + sum(1 for cut in (8, 12, 16, 20) if len(digits) > cut)]
    return Q(**{f"{field}__startswith": prefix})


class IdSearchMixin:
    """Adds search by UUID to a ModelAdmin: a search term that is a whole id or the first
    characters of one (the short id the list shows) matches the UUID fields in `id_search_fields`
    (lookups: `pk`, `event_id`, `webhook__id` for a foreign key)
    as well as the usual `search_fields`."""

    id_search_fields: tuple[str, ...] = ("pk",)

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if not term or " " in term:
            return results, may_have_duplicates
        lookups = [q for q in (_uuid_lookup(field, term) for field in self.id_search_fields) if q]
        if not lookups:
            return results, may_have_duplicates
        match = Q()
        for lookup in lookups:
            match |= lookup
        return results | queryset.filter(match), may_have_duplicates


def pretty_json(value, *, open_: bool = True) -> str:
    """A JSON value pretty-printed in a collapsible block (`{}` and `[]` as they are)."""
    import json

    if value in (None, {}, []):
        return json.dumps(value)
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html(
        '<details{}><summary>{} lines</summary><pre class="pretty-json">{}</pre></details>',
        " open" if open_ else "",
        text.count("\n") + 1,
        text,
    )
