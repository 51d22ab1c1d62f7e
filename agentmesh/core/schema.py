"""The OpenAPI generator's house rules, applied once for every operation.

- Every operation has its own summary and description: the action's own docstring, or one
  made from the action and the resource (never a base class's or a mixin's docstring).
- Every operation documents the errors it can return, in the one error shape (components
  `Problem` and `ProblemItem`): 400, 401, 403, 404, 409, 413, 415, 429 where they apply, and
  503 on every write (maintenance mode; a feature switched off by its flag).
- Request bodies are JSON only (the parser classes) and refuse unknown fields
  (`additionalProperties: false`).
- `@deprecated(sunset=...)` on an action marks it `deprecated: true` here and adds the
  `Deprecation` and `Sunset` headers to its responses; `deprecated_field(...)` marks a
  serializer field.
"""

import functools
import inspect
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from email.utils import format_datetime

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import force_instance
from rest_framework import serializers
from rest_framework.permissions import AllowAny


# --- The error shape ------------------------------------------------------------------------
class ProblemItemSerializer(serializers.Serializer):
    field = serializers.CharField(
        allow_null=True, help_text="The input that is wrong (dotted path), or null for the request."
    )
    code = serializers.CharField(help_text="A stable machine-readable code, e.g. `required`.")
    message = serializers.CharField()


class ProblemSerializer(serializers.Serializer):
    """Every 4xx/5xx answer of the API (RFC 9457 problem details plus `errors`)."""

    type = serializers.CharField(help_text="urn:agentmesh:error:<slug of the status>")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = ProblemItemSerializer(many=True)


ERROR_DESCRIPTIONS = {
    "400": "Invalid input (body or query parameters); `errors` names each field.",
    "401": "Not authenticated (missing, invalid or expired credentials).",
    "403": "Authenticated, but not allowed to do this.",
    "404": "Not found (or not visible to you); on a list, a page or cursor past the end.",
    "409": "Conflicts with the current state (e.g. still referenced, or not in the right status).",
    "413": "Request body too large.",
    "415": "Unsupported media type: request bodies are JSON (application/json).",
    "429": "Too many requests: throttled; retry after the `Retry-After` seconds.",
    "503": "Unavailable: maintenance mode (writes are paused, code `maintenance_mode`, retry after "
    "`Retry-After`), or a feature switched off (code `feature_disabled`, the flag named in `detail`).",
}


# --- Deprecation ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Deprecation:
    since: date | None = None  # when it was deprecated (Deprecation header); None: "true"
    sunset: date | None = None  # when it goes away (Sunset header)
    link: str = ""  # where the migration is described (Link rel="deprecation")

    def headers(self) -> dict[str, str]:
        out = {"Deprecation": _http_date(self.since) if self.since else "true"}
        if self.sunset:
            out["Sunset"] = _http_date(self.sunset)
        if self.link:
            out["Link"] = f'<{self.link}>; rel="deprecation"'
        return out

    def note(self) -> str:
        text = "**Deprecated**"
        if self.sunset:
            text += f"; removed after {self.sunset.isoformat()}"
        if self.link:
            text += f" (see {self.link})"
        return text + "."


def _http_date(day: date) -> str:
    return format_datetime(datetime.combine(day, time(0, 0), tzinfo=UTC), usegmt=True)


def deprecated(*, since: date | None = None, sunset: date | None = None, link: str = ""):
    """Mark a view method or action deprecated: `deprecated: true` in the schema, and its
    responses carry `Deprecation` (and `Sunset`, `Link`) headers. Use above or below `@action`."""
    info = Deprecation(since=since, sunset=sunset, link=link)

    def decorate(func):
        @functools.wraps(func)
        def wrapper(view, request, *args, **kwargs):
            response = func(view, request, *args, **kwargs)
            for name, value in info.headers().items():
                response[name] = value
            return response

        wrapper.deprecation = info
        return wrapper

    return decorate


def deprecated_field(field: serializers.Field, *, sunset: date | None = None, link: str = ""):
    """Mark a serializer field deprecated (`deprecated: true` on its schema property).

    DRF deep-copies declared fields by re-instantiating them, so the mark lives on a subclass."""
    marked = type(
        type(field).__name__, (type(field),), {"deprecation": Deprecation(sunset=sunset, link=link)}
    )
    return marked(*field._args, **field._kwargs)


# --- One or many --------------------------------------------------------------------------
class OneOrMany:
    """A request body that is one object or a non-empty array of them (`oneOf`)."""

    def __init__(self, serializer, max_items: int | None = None):
        self.serializer = serializer
        self.max_items = max_items


# --- The schema class ----------------------------------------------------------------------
_STANDARD_SUMMARIES = {
    "list": "List {plural}",
    "retrieve": "Get {singular}",
    "create": "Create {singular}",
    "update": "Replace {singular}",
    "partial_update": "Update {singular}",
    "destroy": "Delete {singular}",
}
# Actions of the base viewset shared by every owned resource: their summaries name the resource.
_SHARED_ACTION_SUMMARIES = {
    "share": "Share or unshare the {singular}",
    "shares": "Who the {singular} is shared with",
}
_STANDARD_DESCRIPTIONS = {
    "list": "The {plural} you may see (admins see all), paginated; filter, search and order them "
    "with the query parameters.",
    "retrieve": "One {singular} by id (404 when it does not exist or is not visible to you).",
    "create": "Create {a_singular}; you become its owner.",
    "update": "Replace the {singular}'s writable fields (every required field must be given).",
    "partial_update": "Change some of the {singular}'s writable fields (only the ones given).",
    "destroy": "Delete the {singular} (409 while something still references it).",
}


def _first_sentence(doc: str) -> str:
    """A summary from a docstring: its first sentence up to the first aside."""
    text = " ".join(doc.split())
    sentence = re.split(r"[.!?](?:\s|$)|[:;]\s| \(| — ", text, maxsplit=1)[0].strip()
    return sentence if len(sentence) <= 80 else sentence[:77].rsplit(" ", 1)[0] + "…"


def _own_doc(obj) -> str:
    """The object's own docstring, never one inherited from a base class."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    if not doc:
        return ""
    return inspect.cleandoc(doc).strip()


class AutoSchema(SpectacularAutoSchema):
    # --- names --------------------------------------------------------------------------
    def _action_name(self) -> str:
        return getattr(self.view, "action", None) or self.method.lower()

    def _handler(self):
        return getattr(self.view, self._action_name(), None)

    def _resource_names(self) -> tuple[str, str]:
        model = getattr(getattr(self.view, "queryset", None), "model", None)
        if model is not None:
            return str(model._meta.verbose_name), str(model._meta.verbose_name_plural)
        segments = [s for s in self.path.strip("/").split("/") if s and not s.startswith("{")]
        plural = (segments[-1] if segments else "resource").replace("-", " ")
        return plural.rstrip("s") or plural, plural

    def _handler_doc(self) -> str:
        handler = self._handler()
        func = getattr(handler, "__func__", handler)
        return _own_doc(func) if func is not None else ""

    # --- summary and description ---------------------------------------------------------
    def get_summary(self):
        action = self._action_name()
        singular, plural = self._resource_names()
        if action in _SHARED_ACTION_SUMMARIES:
            return _SHARED_ACTION_SUMMARIES[action].format(singular=singular)
        own = self._handler_doc()
        if action in _STANDARD_SUMMARIES and not own:
            return _STANDARD_SUMMARIES[action].format(singular=singular, plural=plural)
        doc = own or _own_doc(type(self.view))
        if doc:
            return _first_sentence(doc)
        return f"{action.replace('_', ' ').capitalize()} {singular}"

    def get_description(self):
        doc = self._handler_doc()
        action = self._action_name()
        if not doc and action in _STANDARD_DESCRIPTIONS:
            singular, plural = self._resource_names()
            article = "an" if singular[:1].lower() in "aeiou" else "a"
            doc = _STANDARD_DESCRIPTIONS[action].format(
                singular=singular, plural=plural, a_singular=f"{article} {singular}"
            )
            if action in ("list", "retrieve"):
                class_doc = _own_doc(type(self.view))
                if class_doc:
                    doc = f"{class_doc}\n\n{doc}"
        doc = doc or _own_doc(type(self.view))
        if action in _SHARED_ACTION_SUMMARIES:
            doc = doc.replace("this object", f"this {self._resource_names()[0]}")
        info = self._deprecation()
        if info:
            doc = f"{info.note()}\n\n{doc}" if doc else info.note()
        return doc

    # --- deprecation -----------------------------------------------------------------------
    def _deprecation(self) -> Deprecation | None:
        return getattr(self._handler(), "deprecation", None)

    def is_deprecated(self) -> bool:
        return self._deprecation() is not None

    def _get_response_headers_for_code(self, status_code, direction="response"):
        headers = super()._get_response_headers_for_code(status_code, direction)
        info = self._deprecation()
        if info and str(status_code).startswith("2"):
            headers = dict(headers or {})
            headers["Deprecation"] = {
                "schema": {"type": "string"},
                "description": "`true` or the date it was deprecated (RFC 9745).",
            }
            if info.sunset:
                headers["Sunset"] = {
                    "schema": {"type": "string"},
                    "description": "When the operation goes away (RFC 8594).",
                }
        return headers

    # --- request bodies ----------------------------------------------------------------------
    def _get_request_for_media_type(self, serializer, direction="request"):
        if isinstance(serializer, OneOrMany):
            component = self.resolve_serializer(force_instance(serializer.serializer), direction)
            array = {"type": "array", "items": component.ref, "minItems": 1}
            if serializer.max_items:
                array["maxItems"] = serializer.max_items
            return {"oneOf": [component.ref, array]}, True
        return super()._get_request_for_media_type(serializer, direction)

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and schema.get("properties"):
            schema["additionalProperties"] = False  # unknown fields are a 400
        return schema

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        info = getattr(field, "deprecation", None)
        if info is not None:
            schema = {**schema, "deprecated": True}
            schema["description"] = " ".join(filter(None, [info.note(), schema.get("description", "")]))
        return schema

    # --- error responses -------------------------------------------------------------------------
    def _error_codes(self) -> list[str]:
        method = self.method
        view = self.view
        public = all(isinstance(p, AllowAny) for p in view.get_permissions())
        has_body = method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None
        detail = "{" in self.path
        codes = []
        if has_body or self._has_query_parameters() or method in ("POST", "PUT", "PATCH"):
            codes.append("400")
        if not public or method == "POST":
            codes += ["401", "403"]
        paginated = {"page", "cursor"} & {p["name"] for p in self._get_parameters() if p.get("in") == "query"}
        if detail or paginated or getattr(view, "may_not_exist", False):
            codes.append("404")
        if method == "DELETE" or (method in ("POST", "PUT", "PATCH") and self._action_name() != "create"):
            codes.append("409")
        if method in ("POST", "PUT", "PATCH"):
            codes.append("413")
            if has_body:
                codes.append("415")
        if view.get_throttles():
            codes.append("429")
        if method in ("POST", "PUT", "PATCH", "DELETE") or getattr(self._handler(), "feature_flag", None):
            codes.append("503")  # maintenance mode (system.middleware), feature flags
        return codes

    def _has_query_parameters(self) -> bool:
        return any(p.get("in") == "query" for p in self._get_parameters())

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        problem = self.resolve_serializer(ProblemSerializer, "response").ref
        # Errors are rendered by the negotiated renderer (JSON text also for event streams).
        content = {media_type: {"schema": problem} for media_type in self.map_renderers("media_type")}
        for code in self._error_codes():
            if code in responses:
                continue
            responses[code] = {
                "content": content,
                "description": ERROR_DESCRIPTIONS[code],
            }
        return responses
