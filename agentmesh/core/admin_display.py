"""How the admin shows recorded values to an operator: human durations ("7.9 s", "2 min 3 s"),
costs with currency ("$0.0012"; "$0" for a recorded zero, "—" for none), short ids with the
full one on hover, pretty-printed collapsible JSON, links to other admin pages (an object, a
filtered list), and search by whole or short id (IdSearchMixin).

Plain functions returning safe HTML (or text), so any ModelAdmin can use them in a
`@admin.display` method or a readonly field."""

import json
import re
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.db import models
from django.db.models import Q
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

EMPTY = "—"
SHORT_ID_CHARS = 8
#: JSON longer than this (as text) starts collapsed
OPEN_JSON_CHARS = 200
#: stop pretty-printing after this many characters (a page must stay light)
MAX_JSON_CHARS = 100_000


def human_duration(ms: float | int | None) -> str:
    """Milliseconds as a person reads them: "3.2 ms", "850 ms", "7.9 s", "2 min 3 s", "1 h 4 min"."""
    if ms is None:
        return EMPTY
    ms = float(ms)
    if ms < 0:
        return EMPTY
    if ms < 10:  # a fast span is not "0 ms"
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def money(usd: Decimal | float | int | str | None, *, currency: str = "$") -> str:
    """A cost: "—" for none (not recorded), "$0" for a recorded zero, two decimals from a dollar
    up, else two significant digits ("$0.0012", "$0.15", "$0.000042"), so a fraction of a cent
    does not read as $0.00."""
    if usd is None or usd == "":
        return EMPTY
    value = Decimal(str(usd))
    if value == 0:
        return f"{currency}0"
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value >= 1:
        return f"{sign}{currency}{value:,.2f}"
    exponent = value.adjusted()  # -3 for 0.0012
    places = min(8, max(2, -exponent + 1))
    text = f"{value:.{places}f}"
    if places > 2:  # "0.040" reads as "0.04"
        whole, _, fraction = text.partition(".")
        text = f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"
    if Decimal(text) == 0:  # below what 8 places show
        return f"< {currency}0.00000001" if not sign else f"> -{currency}0.00000001"
    return f"{sign}{currency}{text}"


def short_id(value: Any, *, url: str | None = None) -> SafeString | str:
    """The first characters of an id, the full one on hover (and as a link when `url`); a value
    hardly longer than that ("req-1") is shown whole."""
    if value in (None, ""):
        return EMPTY
    full = str(value)
    shown = full if len(full) <= SHORT_ID_CHARS + 2 else full[:SHORT_ID_CHARS]
    if url:
        return format_html('<a href="{}" title="{}" class="short-id"><code>{}</code></a>', url, full, shown)
    return format_html('<code title="{}" class="short-id">{}</code>', full, shown)


def pretty_json(value: Any, *, summary: str = "", open_: bool | None = None) -> SafeString | str:
    """Indented JSON (escaped, keys in their recorded order) in a collapsible <details>; small
    values start open. "—" for none; an empty object or list shows as `{}` / `[]`."""
    if value is None or value == "":
        return EMPTY
    if value == {} or value == []:
        return json.dumps(value)
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    if len(text) > MAX_JSON_CHARS:
        text = text[:MAX_JSON_CHARS] + f"\n… ({len(text) - MAX_JSON_CHARS} more characters)"
    if open_ is None:
        open_ = len(text) <= OPEN_JSON_CHARS
    label = summary or _summary(value, text)
    return format_html(
        '<details class="json"{}><summary>{}</summary><pre style="white-space: pre-wrap; '
        'max-height: 30em; overflow: auto; margin: 0">{}</pre></details>',
        " open" if open_ else "",
        label,
        text,
    )


def _summary(value: Any, text: str) -> str:
    if isinstance(value, dict):
        return f"{{…}} {len(value)} key{'s' if len(value) != 1 else ''}"
    if isinstance(value, list):
        return f"[…] {len(value)} item{'s' if len(value) != 1 else ''}"
    lines = text.count("\n") + 1
    return f"{len(text)} characters" + (f", {lines} lines" if lines > 1 else "")


def admin_url(obj, *, action: str = "change", site: str = "admin") -> str | None:
    """The admin page of `obj`, or None when its model is not in the admin."""
    if obj is None:
        return None
    opts = obj._meta
    try:
        return reverse(f"{site}:{opts.app_label}_{opts.model_name}_{action}", args=[obj.pk])
    except NoReverseMatch:
        return None


def model_admin_url(model, pk: Any, *, site: str = "admin") -> str | None:
    """The admin page of the `model` row `pk`, without loading it (None when not in the admin)."""
    opts = model._meta
    try:
        return reverse(f"{site}:{opts.app_label}_{opts.model_name}_change", args=[pk])
    except NoReverseMatch:
        return None


def admin_link(obj, label: Any = None) -> SafeString | str:
    """A link to `obj`'s admin page (its text when the model has none)."""
    if obj is None:
        return EMPTY
    url = admin_url(obj)
    text = str(obj) if label is None else label
    return format_html('<a href="{}">{}</a>', url, text) if url else str(text)


def changelist_url(model, *, site: str = "admin", **params: Any) -> str:
    """A model's admin list filtered by `params` (`?trace_id=…`)."""
    opts = model._meta
    url = reverse(f"{site}:{opts.app_label}_{opts.model_name}_changelist")
    query = urlencode({key: str(value) for key, value in params.items() if value not in (None, "")})
    return f"{url}?{query}" if query else url


def changelist_link(model, label: str, **params: Any) -> SafeString:
    return format_html('<a href="{}">{}</a>', changelist_url(model, **params), label)


def trace_links(trace_id: str, obj=None) -> SafeString | str:
    """Links to the trace's spans and events (observability lists filtered by trace id) and to
    the events about `obj` (audit, state changes: filtered by resource)."""
    from django.apps import apps

    span = apps.get_model("observability", "Span")
    event = apps.get_model("observability", "ObservabilityEvent")
    links = []
    if trace_id:
        links.append(changelist_link(span, "spans of the trace", trace_id=trace_id))
        links.append(changelist_link(event, "events of the trace", trace_id=trace_id))
    if obj is not None and obj.pk is not None:
        links.append(
            changelist_link(event, "events about it", resource_type=obj._meta.label_lower, resource_id=obj.pk)
        )
    if not links:
        return EMPTY
    trace = format_html("<code>{}</code> ", trace_id) if trace_id else ""
    return format_html("{}{}", trace, format_html_join(" · ", "{}", ((link,) for link in links)))


def timestamp(value) -> str:
    """A moment to the second, in the site's time zone ("2026-12-06 08:25:31")."""
    if value is None:
        return EMPTY
    from django.utils import timezone

    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S")


def list_timestamp(value) -> SafeString | str:
    """A moment for a list column: to the second, the date over the time (a narrow column),
    the ISO value with its offset on hover."""
    if value is None:
        return EMPTY
    from django.utils import timezone

    local = timezone.localtime(value)
    return format_html(
        '<span title="{}">{}<br>{}</span>',
        local.isoformat(),
        local.strftime("%Y-%m-%d"),
        local.strftime("%H:%M:%S"),
    )


def truncated(text: Any, chars: int = 24) -> SafeString | str:
    """Long text cut for a list column, the whole on hover."""
    if text in (None, ""):
        return EMPTY
    text = str(text)
    if len(text) <= chars:
        return text
    return format_html('<span title="{}">{}…</span>', text, text[: chars - 1])


#: a term that may be (the start of) an id: hex digits and dashes, at least this long
_ID_TERM = re.compile(r"^[0-9a-fA-F-]{6,36}$")
#: the whole id as the pages show it on hover
_WHOLE_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _id_field(model, lookup: str):
    """The field an `id_search_fields` lookup ends on (through a foreign key: the one it points
    at), and the lookup to filter it by (`run_id` -> `run__id`: a prefix lookup needs the field
    itself; the join is trimmed, the query still reads the local column)."""
    from django.contrib.admin.utils import get_fields_from_path

    if lookup == "pk":
        return model._meta.pk, "pk"
    parts = lookup.split("__")
    field = get_fields_from_path(model, lookup)[-1]
    if field.is_relation:
        return field.target_field, "__".join([*parts[:-1], field.name, field.target_field.name])
    return field, lookup


def uuid_lookup(model, lookup: str, term: str) -> Q | None:
    """A filter on the id field `lookup` of `model` for `term`: equality for a whole id (any
    spelling: with or without dashes, any case), a prefix for its first characters (at least 6,
    e.g. the 8 a short id shows); None when `term` cannot be (part of) an id.

    A prefix is matched in the dashed text form: PostgreSQL compares a uuid's text as it is,
    Django strips the dashes where UUIDs are stored as 32 hex digits (SQLite). A text field
    holding ids (`caller_ref`, `resource_id`) is compared with the dashed lower-case text."""
    if not _ID_TERM.match(term):
        return None
    field, lookup = _id_field(model, lookup)
    is_uuid = isinstance(field, models.UUIDField)
    if not is_uuid and not isinstance(field, (models.CharField, models.TextField)):
        return None  # e.g. an integer key: no id text to match
    try:
        whole = uuid.UUID(term)
    except ValueError:
        pass
    else:
        return Q(**{lookup: whole if is_uuid else str(whole)})
    digits = term.replace("-", "").lower()
    if len(digits) > 32:
        return None
    text = str(uuid.UUID(digits.ljust(32, "0")))
    prefix = text[: len(digits) + sum(1 for cut in (8, 12, 16, 20) if len(digits) > cut)]
    return Q(**{f"{lookup}__startswith": prefix})


class IdSearchMixin:
    """Search by id in a ModelAdmin list, for the id fields in `id_search_fields` (lookups: `pk`,
    `run_id` or `webhook__id` through a foreign key, or a text field holding ids such as
    `caller_ref`).

    - A whole id as the pages show it on hover (dashed, any case) finds the rows having it in
      those fields by indexed equality, instead of a LIKE over every search field.
    - The first characters of an id (a short id, 6 hex digits or more) or a whole id without its
      dashes finds those rows as well as what the usual `search_fields` find (a 32-digit term
      may be a trace id).
    - Any other term searches as usual.
    Works on SQLite (UUIDs as 32 hex digits) and PostgreSQL (native uuid)."""

    id_search_fields: tuple[str, ...] = ("pk",)

    def get_search_results(self, request, queryset, search_term):
        from django.contrib.admin.utils import lookup_spawns_duplicates

        term = search_term.strip()
        lookups = []
        if term and " " not in term:
            lookups = [q for q in (uuid_lookup(self.model, f, term) for f in self.id_search_fields) if q]
        if not lookups:
            return super().get_search_results(request, queryset, search_term)
        match = Q()
        for lookup in lookups:
            match |= lookup
        spawns = any(lookup_spawns_duplicates(self.opts, f) for f in self.id_search_fields)
        if _WHOLE_ID.match(term):
            return queryset.filter(match), spawns
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        return results | queryset.filter(match), may_have_duplicates or spawns


# --- columns and fields of recorded runs, executions and steps ------------------------------
# `@admin.display` functions for `list_display`, `fields` and inline `fields` of any admin whose
# model has the field they name (agents, workflows, tools).


@admin.display(description="Status", ordering="status")
def status(obj) -> str:
    """The status as stored (`cancelled`), what the API and the logs say."""
    return obj.status


@admin.display(description="Duration", ordering="duration_ms")
def duration(obj) -> str:
    return human_duration(obj.duration_ms)


@admin.display(description="Cost", ordering="cost_usd")
def cost(obj) -> str:
    return money(obj.cost_usd)


@admin.display(description="Tokens (in / out)")
def tokens(obj) -> str:
    return f"{obj.input_tokens} / {obj.output_tokens}"


@admin.display(description="Created", ordering="created_at")
def created(obj):
    return list_timestamp(obj.created_at)


@admin.display(description="Started", ordering="started_at")
def started(obj) -> str:
    return timestamp(obj.started_at)


@admin.display(description="Finished", ordering="finished_at")
def finished(obj) -> str:
    return timestamp(obj.finished_at)


def error_block(text: Any) -> SafeString | str:
    """An error message as written (line breaks kept, escaped); "—" for none."""
    return format_html("<pre style='white-space: pre-wrap'>{}</pre>", text) if text else EMPTY


class RecordDisplay:
    """Displays a ModelAdmin of recorded runs, executions or steps names in its `list_display`
    (`short_pk`, with `list_display_links = ["short_pk"]`) and its fields: the short and the
    full id, the error, the trace links and the metadata."""

    @admin.display(description="ID", ordering="id")
    def short_pk(self, obj):
        return short_id(obj.pk)

    @admin.display(description="ID")
    def full_id(self, obj):
        return format_html("<code>{}</code>", obj.pk)

    @admin.display(description="Error")
    def error_text(self, obj):
        return error_block(obj.error)

    @admin.display(description="Trace")
    def trace(self, obj):
        return trace_links(obj.trace_id, obj)

    @admin.display(description="Metadata")
    def metadata_pretty(self, obj):
        return pretty_json(obj.metadata)
