"""The blueprint format, parameter rendering, references, and the exchange format.

A body:

    {"resources": [
        {"key": "search", "kind": "tool", "spec": {<POST /tools payload>}},
        {"key": "helper", "kind": "agent", "spec": {<POST /agents payload>}},
        {"key": "flow", "kind": "workflow", "spec": {<POST /workflows payload>}}]}

A template of kind agent, workflow or tool has exactly one resource of that kind; a bundle has
one or more of any kind. In a spec:

- `"{{ params.name }}"` (the whole string) is the parameter's typed value; text with
  `{{ params.… }}` inside is rendered to text (Jinja2 sandbox). Other `{{ … }}` (a workflow's
  own `{{ inputs.x }}`, `{{ steps.a.output }}`) are left alone.
- `{"$ref": "model", "name": "gpt-4o-mini"}` references something outside the template by name
  (kinds: model, prompt, skill, constraint, secret, tool, agent, workflow), resolved at
  instantiate time among what the caller may use (their own first);
  `{"$ref": "local", "key": "search"}` is another resource of the same template.
  Either becomes the object's id.
- No secret value: a `*secret_id` field must be a secret reference.
"""

import hashlib
import json
import re
from typing import Any

import yaml
from django.conf import settings

from agentmesh.core import sandbox
from agentmesh.core.exceptions import ServiceValidationError
from agentmesh.core.permissions import permitted_queryset
from masterdata.constraints import first_schema_error
from masterdata.models import Constraint, ModelConfig, Prompt, Secret, Skill

from .models import TemplateKind

RESOURCE_KINDS = ("tool", "agent", "workflow")  # creation order: a later kind may use an earlier
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_RESOURCES = 50
LOCAL = "local"
API_VERSION = "agentmesh/v1"
EXCHANGE_KIND = "Template"

# `{{ params… }}` only: a workflow's own expressions stay as they are.
PARAM_EXPRESSION = re.compile(r"\{\{\s*(params\b(?:[^}]|\}(?!\}))*?)\s*\}\}")
PARAM_NAME = re.compile(r"params\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*['\"]([^'\"]+)['\"]\s*\])")


def ref_models() -> dict[str, type]:
    from agents.models import Agent
    from tools.models import Tool
    from workflows.models import Workflow

    return {
        "model": ModelConfig,
        "prompt": Prompt,
        "skill": Skill,
        "constraint": Constraint,
        "secret": Secret,
        "tool": Tool,
        "agent": Agent,
        "workflow": Workflow,
    }


REF_KINDS = ("model", "prompt", "skill", "constraint", "secret", "tool", "agent", "workflow")


def checksum(body: Any, parameters: Any) -> str:
    canonical = json.dumps({"body": body, "parameters": parameters}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- structure -------------------------------------------------------------------------------
def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and "$ref" in value


def _walk(value: Any, path: str):
    """Yield (path, value) for every node of a JSON value."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


def check_ref(value: dict, field: str, keys: set[str]) -> None:
    kind = value.get("$ref")
    if kind == LOCAL:
        if set(value) != {"$ref", "key"}:
            raise ServiceValidationError(
                'A local reference is {"$ref": "local", "key": "<key>"}.', field=field
            )
        if value["key"] not in keys:
            raise ServiceValidationError(f"No resource with the key {value['key']!r}.", field=f"{field}.key")
        return
    if kind not in REF_KINDS:
        raise ServiceValidationError(
            f"$ref is one of: {', '.join((*REF_KINDS, LOCAL))}.", field=f"{field}.$ref"
        )
    if set(value) != {"$ref", "name"} or not isinstance(value["name"], str) or not value["name"].strip():
        raise ServiceValidationError(f'A reference is {{"$ref": "{kind}", "name": "<name>"}}.', field=field)


def check_body(kind: str, body: Any) -> None:
    """The body's structure: resources, keys, kinds, references (field paths under `body`)."""
    if not isinstance(body, dict) or set(body) != {"resources"}:
        raise ServiceValidationError('The body is {"resources": [...]}.', field="body")
    resources = body["resources"]
    if not isinstance(resources, list) or not resources:
        raise ServiceValidationError("A non-empty list of resources.", field="body.resources")
    if len(resources) > MAX_RESOURCES:
        raise ServiceValidationError(f"At most {MAX_RESOURCES} resources.", field="body.resources")
    keys: set[str] = set()
    for index, resource in enumerate(resources):
        field = f"body.resources[{index}]"
        if not isinstance(resource, dict) or set(resource) != {"key", "kind", "spec"}:
            raise ServiceValidationError('Each resource is {"key", "kind", "spec"}.', field=field)
        key = resource["key"]
        if not isinstance(key, str) or not KEY_PATTERN.match(key):
            raise ServiceValidationError("1-64 letters, digits, _ or -.", field=f"{field}.key")
        if key in keys:
            raise ServiceValidationError(f"The key {key!r} is used twice.", field=f"{field}.key")
        keys.add(key)
        if resource["kind"] not in RESOURCE_KINDS:
            raise ServiceValidationError(f"One of: {', '.join(RESOURCE_KINDS)}.", field=f"{field}.kind")
        if not isinstance(resource["spec"], dict):
            raise ServiceValidationError("The create payload, an object.", field=f"{field}.spec")
    if kind != TemplateKind.BUNDLE and (len(resources) != 1 or resources[0]["kind"] != kind):
        raise ServiceValidationError(
            f"A template of kind {kind} has exactly one resource of kind {kind} (use a bundle).",
            field="body.resources",
        )
    for index, resource in enumerate(resources):
        for path, value in _walk(resource["spec"], f"body.resources[{index}].spec"):
            if _is_ref(value):
                check_ref(value, path, keys - {resource["key"]})
            elif isinstance(value, dict):
                for name, item in value.items():
                    if name.endswith("secret_id") and item not in (None, "") and not _secret_ref(item):
                        raise ServiceValidationError(
                            'A template never holds a secret: use {"$ref": "secret", "name": "<name>"}.',
                            field=f"{path}.{name}",
                        )


def _secret_ref(value: Any) -> bool:
    return _is_ref(value) and value.get("$ref") == "secret"


def check_parameters(parameters: Any, body: dict) -> None:
    """A JSON Schema object whose properties each carry a default or examples, and every
    `params.<name>` the body uses is declared."""
    if parameters in (None, {}):
        parameters = {}
    if not isinstance(parameters, dict):
        raise ServiceValidationError("A JSON Schema object.", field="parameters")
    if parameters:
        from masterdata.services import check_json_schema

        check_json_schema(parameters, "parameters")
        if parameters.get("type") != "object" or not isinstance(parameters.get("properties", {}), dict):
            raise ServiceValidationError('"type": "object" with "properties".', field="parameters")
    properties = parameters.get("properties", {})
    for name, schema in properties.items():
        if not isinstance(schema, dict) or ("default" not in schema and not schema.get("examples")):
            raise ServiceValidationError(
                "Give the parameter a default or examples (used to validate the template).",
                field=f"parameters.properties.{name}",
            )
    for path, value in _walk(body, "body"):
        if isinstance(value, str):
            for expression in PARAM_EXPRESSION.findall(value):
                for match in PARAM_NAME.finditer(expression):
                    name = match.group(1) or match.group(2)
                    if name not in properties:
                        raise ServiceValidationError(f"Undeclared parameter {name!r}.", field=path)


def sample_params(parameters: dict) -> dict:
    """Each parameter's default, else its first example."""
    out = {}
    for name, schema in (parameters or {}).get("properties", {}).items():
        out[name] = schema["default"] if "default" in schema else schema["examples"][0]
    return out


def resolve_params(parameters: dict, given: Any) -> dict:
    """Defaults filled in, then validated against the schema; a 400 names `params.<name>`."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ServiceValidationError("An object of parameter values.", field="params")
    properties = (parameters or {}).get("properties", {})
    unknown = sorted(set(given) - set(properties))
    if unknown:
        raise ServiceValidationError("Unknown parameter.", field=f"params.{unknown[0]}")
    values = {name: schema["default"] for name, schema in properties.items() if "default" in schema}
    values.update(given)
    if parameters:
        error = first_schema_error(parameters, values, root="params")
        if error is not None:
            field = error.field
            if field == "params":  # a missing required parameter: name it
                missing = [n for n in parameters.get("required", []) if n not in values]
                field = f"params.{missing[0]}" if missing else field
            raise ServiceValidationError(str(error), field=field)
    return values


# --- rendering -------------------------------------------------------------------------------
def _render_string(text: str, params: dict, field: str) -> Any:
    try:
        whole = PARAM_EXPRESSION.fullmatch(text.strip())
        if whole and text.strip() == text:
            rendered = sandbox.render("{{ (" + whole.group(1) + ") | tojson }}", {"params": params})
            return json.loads(rendered)
        return PARAM_EXPRESSION.sub(
            lambda m: sandbox.render("{{ " + m.group(1) + " }}", {"params": params}), text
        )
    except sandbox.TemplateProblem as exc:
        raise ServiceValidationError(str(exc), field=field) from exc


def render(value: Any, params: dict, field: str) -> Any:
    """`value` with every `{{ params… }}` rendered (typed when a string is one expression)."""
    if isinstance(value, str):
        return _render_string(value, params, field) if "params" in value and "{{" in value else value
    if isinstance(value, dict):
        return {key: render(item, params, f"{field}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, params, f"{field}[{index}]") for index, item in enumerate(value)]
    return value


# --- references ------------------------------------------------------------------------------
def find_refs(resources: list[dict]) -> list[tuple[str, str, str]]:
    """(kind, name, field) of every outside reference, in order."""
    refs = []
    for index, resource in enumerate(resources):
        for path, value in _walk(resource["spec"], f"resources[{index}].spec"):
            if _is_ref(value) and value["$ref"] != LOCAL:
                refs.append((value["$ref"], value["name"], path))
    return refs


def lookup(kind: str, name: str, user):
    """The object of `kind` called `name` that `user` may use: their own first, then the oldest."""
    model = ref_models()[kind]
    candidates = permitted_queryset(user, model.objects.filter(name=name), "use")
    own = candidates.filter(owner=user).first()
    return own or candidates.order_by("created_at", "pk").first()


def resolve_refs(resources: list[dict], user) -> tuple[dict, list[dict]]:
    """{(kind, name): object} of what resolved, and the list of what did not."""
    found, missing = {}, []
    for kind, name, field in find_refs(resources):
        if (kind, name) in found:
            continue
        obj = lookup(kind, name, user)
        if obj is None:
            missing.append({"kind": kind, "name": name, "field": field})
        else:
            found[(kind, name)] = obj
    return found, missing


def substitute(value: Any, found: dict, local_ids: dict[str, str], placeholder: str | None = None) -> Any:
    """Replace references by ids (a local key not created yet by `placeholder`, if given)."""
    if _is_ref(value):
        if value["$ref"] == LOCAL:
            return local_ids.get(value["key"], placeholder)
        obj = found.get((value["$ref"], value["name"]))
        return str(obj.pk) if obj is not None else placeholder
    if isinstance(value, dict):
        return {k: substitute(v, found, local_ids, placeholder) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, found, local_ids, placeholder) for v in value]
    return value


def has_local_refs(value: Any) -> bool:
    return any(_is_ref(v) and v["$ref"] == LOCAL for _, v in _walk(value, ""))


def ordered(resources: list[dict]) -> list[dict]:
    return sorted(resources, key=lambda r: RESOURCE_KINDS.index(r["kind"]))


# --- exchange format -------------------------------------------------------------------------
class BoundedSafeLoader(yaml.SafeLoader):
    """safe_load that refuses documents with too many nodes or alias expansions."""

    def __init__(self, stream):
        super().__init__(stream)
        self._nodes = 0
        self._aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > settings.TEMPLATES_IMPORT_MAX_ALIASES:
                raise yaml.YAMLError("Too many aliases (a YAML bomb?).")
        self._nodes += 1
        if self._nodes > settings.TEMPLATES_IMPORT_MAX_NODES:
            raise yaml.YAMLError("Too many nodes.")
        return super().compose_node(parent, index)

    def construct_document(self, node):
        # Anchored nodes are shared objects: count what expanding them would produce.
        if _expanded_size(node, settings.TEMPLATES_IMPORT_MAX_NODES) > settings.TEMPLATES_IMPORT_MAX_NODES:
            raise yaml.YAMLError("The document expands to too many values (a YAML bomb?).")
        return super().construct_document(node)


# Dates stay strings: a blueprint is JSON.
BoundedSafeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _check_json(value: Any, path: str) -> None:
    """Only what JSON (and a PostgreSQL JSON column) can hold: no binary, sets, NUL, inf/nan."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ServiceValidationError("Keys are strings.", field=path or "file")
            _check_json(key, path)
            _check_json(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]")
    elif isinstance(value, str):
        if "\x00" in value:
            raise ServiceValidationError("Strings may not contain the NUL character.", field=path or "file")
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ServiceValidationError("Numbers are finite.", field=path or "file")
    elif value is not None and not isinstance(value, bool | int):
        raise ServiceValidationError(f"Not a JSON value ({type(value).__name__}).", field=path or "file")


def _expanded_size(node, limit: int) -> int:
    memo: dict[int, int] = {}

    def size(n) -> int:
        if id(n) in memo:
            return memo[id(n)]
        memo[id(n)] = limit + 1  # a recursive structure is refused too
        if isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(c) for c in n.value)
        elif isinstance(n, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in n.value)
        else:
            total = 1
        memo[id(n)] = min(total, limit + 1)
        return memo[id(n)]

    return size(node)


def parse_document(raw: bytes) -> Any:
    """YAML (a superset of JSON) within the byte, node and alias limits; 400 otherwise."""
    if len(raw) > settings.TEMPLATES_IMPORT_MAX_BYTES:
        raise ServiceValidationError(
            f"The document is larger than {settings.TEMPLATES_IMPORT_MAX_BYTES} bytes.", field="file"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ServiceValidationError("The document is not UTF-8.", field="file") from exc
    try:
        document = yaml.load(text, Loader=BoundedSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ServiceValidationError(f"Not a valid YAML or JSON document: {exc}"[:500], field="file") from exc
    except RecursionError as exc:
        raise ServiceValidationError("The document is nested too deeply.", field="file") from exc
    _check_json(document, "")
    return document


EXCHANGE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "versions"],
    "properties": {
        "apiVersion": {"const": API_VERSION},
        "kind": {"const": EXCHANGE_KIND},
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "kind"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                "description": {"type": "string"},
                "kind": {"enum": list(TemplateKind.values)},
                "category": {"type": "string", "maxLength": 100},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
        },
        "versions": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["number", "body"],
                "properties": {
                    "number": {"type": "integer", "minimum": 1},
                    "changelog": {"type": "string"},
                    "parameters": {"type": "object"},
                    "body": {"type": "object"},
                    "checksum": {"type": "string"},
                },
            },
        },
    },
}


def check_document(document: Any) -> None:
    error = first_schema_error(EXCHANGE_SCHEMA, document, root="")
    if error is not None:
        raise ServiceValidationError(str(error), field=error.field.lstrip(".") or "file")
    numbers = [v["number"] for v in document["versions"]]
    if numbers != sorted(set(numbers)):
        raise ServiceValidationError("Version numbers ascend, each once.", field="versions")


def document_for(template, versions) -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": EXCHANGE_KIND,
        "metadata": {
            "name": template.name,
            "description": template.description,
            "kind": template.kind,
            "category": template.category,
            "tags": list(template.tags or []),
        },
        "versions": [
            {
                "number": v.number,
                "changelog": v.changelog,
                "parameters": v.parameters,
                "body": v.body,
                "checksum": v.checksum,
            }
            for v in versions
        ],
    }


def dump(document: dict, fmt: str) -> bytes:
    if fmt == "json":
        return (json.dumps(document, indent=2, sort_keys=False) + "\n").encode()
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode()
