"""Import an OpenAPI 3.x document as `http` tools: one tool per operation (path x method).

The document comes as text (JSON or YAML), bytes, an already parsed dict, or a URL fetched through
the safe HTTP client. It is checked by hand (no validator dependency), bounded in size, node count and
nesting depth, its local `$ref`s are inlined (cycles become `{}`), and every operation becomes a tool
whose arguments are the operation's path/query/header parameters plus a `body` for a JSON request
body. All tools are created in one transaction: either every operation is imported or none.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any
from urllib.parse import unquote, urljoin

import yaml
from django.db import transaction

from agentmesh.core import safe_http
from agentmesh.core.exceptions import ServiceValidationError
from masterdata.services import MAX_TAGS, TAG_PATTERN

from .models import Tool
from .naming import NAME_MAX, owner_tool_names, sanitize_name, unique_name
from .services import tool_create

MAX_DOCUMENT_BYTES = 2 * 1024 * 1024
MAX_NODES = 250_000  # values in the parsed document (YAML aliases count every time they are used)
MAX_DEPTH = 64  # nesting of the parsed document
MAX_SCHEMA_NODES = 20_000  # values of one tool's arguments schema once $refs are inlined
MAX_REF_DEPTH = 48  # nesting of one inlined schema
MAX_OPERATIONS = 500
MAX_DESCRIPTION = 4000
MAX_CATEGORY = 100
FETCH_TIMEOUT_SECONDS = 20.0

_PREFIX = re.compile(r"^[a-zA-Z0-9_-]{0,48}$")
# Argument keys: anything LLM function-calling APIs accept; path arguments also become {placeholders},
# where str.format reads "." and "[" as attribute / index access, so they get a narrower alphabet.
_ARG_KEY = re.compile(r"^[a-zA-Z0-9_.-]{1,64}$")
_PATH_ARG_KEY = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ARG_CHARS = re.compile(r"[^a-zA-Z0-9_.-]+")
_PATH_ARG_CHARS = re.compile(r"[^a-zA-Z0-9_-]+")
_TEMPLATE = re.compile(r"\{([^{}]*)\}")

# OpenAPI method keys we can call, in the order tools are created within a path.
METHODS = ["get", "put", "post", "delete", "patch", "head"]
UNSUPPORTED_METHODS = {"options", "trace"}
PARAMETER_LOCATIONS = {"path", "query", "header", "cookie"}
# OpenAPI: header parameters with these names SHALL be ignored (the client sets them).
IGNORED_HEADERS = {"accept", "content-type", "authorization"}


class _Invalid(Exception):
    """Internal: becomes a ServiceValidationError on `field`."""

    def __init__(self, message: str, field: str = "document") -> None:
        super().__init__(message)
        self.field = field


def _error(message: str, field: str = "document", code: str = "invalid") -> ServiceValidationError:
    return ServiceValidationError(message, field=field, code=code)


# --- loading ----------------------------------------------------------------------------------
def _parse_text(text: str) -> Any:
    if text.lstrip().startswith(("{", "[")):
        try:
            return json.loads(text)
        except ValueError:
            pass  # YAML flow style also starts with "{"; let the YAML parser say what is wrong
        except RecursionError:
            raise _Invalid(f"The document is nested more than {MAX_DEPTH} levels deep.") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _Invalid(f"Neither valid JSON nor valid YAML: {exc}"[:1000]) from None
    except RecursionError:
        raise _Invalid(f"The document is nested more than {MAX_DEPTH} levels deep.") from None


def _load_text(raw: str | bytes, field: str) -> Any:
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > MAX_DOCUMENT_BYTES:
        raise _Invalid(f"The document is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB.", field)
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise _Invalid("The document is not UTF-8 text.", field) from None
    if not raw.strip():
        raise _Invalid("The document is empty.", field)
    try:
        return _parse_text(raw)
    except _Invalid as exc:
        exc.field = field
        raise


class _Plain:
    """Copies a parsed document into plain JSON values, within MAX_NODES and MAX_DEPTH.

    Counting the copy (not the source) also stops YAML alias bombs: a shared node counts every time."""

    def __init__(self, field: str) -> None:
        self.nodes = 0
        self.field = field

    def copy(self, value: Any, depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Invalid(f"The document has more than {MAX_NODES} values.", self.field)
        if depth > MAX_DEPTH:
            raise _Invalid(f"The document is nested more than {MAX_DEPTH} levels deep.", self.field)
        if isinstance(value, dict):
            return {self._key(k): self.copy(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.copy(v, depth + 1) for v in value]
        if value is None or isinstance(value, bool | int | str):
            return value
        if isinstance(value, float):
            return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
        if isinstance(value, datetime.date | datetime.datetime):
            return value.isoformat()  # YAML timestamps, e.g. an unquoted `example: 2024-01-01`
        return str(value)

    @staticmethod
    def _key(key: Any) -> str:
        if isinstance(key, bool):
            return str(key).lower()
        if isinstance(key, datetime.date | datetime.datetime):
            return key.isoformat()
        return str(key)


def _fetch(url: Any) -> tuple[str | bytes, str]:
    if not isinstance(url, str) or not url.strip():
        raise _Invalid("Give the http(s) URL of the OpenAPI document.", "url")
    url = url.strip()
    try:
        response = safe_http.safe_request(
            "GET",
            url,
            max_bytes=MAX_DOCUMENT_BYTES,
            timeout=FETCH_TIMEOUT_SECONDS,
            headers={"Accept": "application/json, application/yaml;q=0.9, text/yaml;q=0.9, */*;q=0.5"},
        )
    except safe_http.ResponseTooLarge:
        raise _Invalid(
            f"The document at {url} is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB.", "url"
        ) from None
    except safe_http.SafeHTTPError as exc:
        raise _Invalid(str(exc), "url") from None
    if response.status_code >= 400:
        raise _Invalid(f"GET {url} answered {response.status_code}.", "url")
    return response.content, str(response.url)


def _load(document: Any, url: Any) -> tuple[dict, str | None]:
    """The plain document and, when fetched, the URL it came from."""
    if document is not None and url is not None:
        raise _Invalid("Give either a document or a URL, not both.", "url")
    if document is None and url is None:
        raise _Invalid("Give the OpenAPI document or its URL.")
    source_url = None
    field = "document"
    if url is not None:
        document, source_url = _fetch(url)
        field = "url"
    if isinstance(document, str | bytes):
        document = _load_text(document, field)
    elif not isinstance(document, dict):
        raise _Invalid("The document must be JSON or YAML text, or an object.", field)
    plain = _Plain(field).copy(document)
    if not isinstance(plain, dict):
        raise _Invalid("The document must be an object (a mapping at the top level).", field)
    _check_openapi(plain, field)
    return plain, source_url


def _check_openapi(doc: dict, field: str) -> None:
    version = doc.get("openapi")
    if not isinstance(version, str) or not version.startswith("3."):
        if "swagger" in doc:
            raise _Invalid(
                f"This is a Swagger {doc.get('swagger')} document; only OpenAPI 3.x is supported "
                "(convert it first, e.g. with swagger2openapi).",
                field,
            )
        raise _Invalid('Not an OpenAPI 3.x document: "openapi" must be a version like "3.0.3".', field)
    if not isinstance(doc.get("paths"), dict):
        raise _Invalid('An OpenAPI document needs "paths" (an object of path items).', field)
    for key in ("servers", "tags"):
        if key in doc and not isinstance(doc[key], list):
            raise _Invalid(f'"{key}" must be a list.', field)
    if "components" in doc and not isinstance(doc["components"], dict):
        raise _Invalid('"components" must be an object.', field)


# --- $ref -------------------------------------------------------------------------------------
class _Resolver:
    """Inlines local `$ref`s (`#/...` JSON pointers). A reference back into its own chain (a cycle),
    one nested beyond MAX_REF_DEPTH, or a non-local one becomes `{}`."""

    def __init__(self, doc: dict) -> None:
        self.doc = doc
        self.nodes = 0

    def lookup(self, ref: str) -> Any:
        if ref == "#":
            return self.doc
        if not ref.startswith("#/"):
            raise KeyError(ref)
        node: Any = self.doc
        for part in ref[2:].split("/"):
            part = unquote(part).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict):
                node = node[part]
            elif isinstance(node, list) and part.isdigit():
                node = node[int(part)]
            else:
                raise KeyError(ref)
        return node

    def deref(self, node: Any, chain: tuple[str, ...] = ()) -> tuple[Any, tuple[str, ...]]:
        """Follow `$ref`s at the top of `node` (a parameter, request body, path item)."""
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in chain or len(chain) >= MAX_REF_DEPTH:
                return {}, chain
            try:
                target = self.lookup(ref)
            except (KeyError, IndexError):
                raise _Invalid(f"Cannot resolve $ref {ref!r}.") from None
            chain = (*chain, ref)
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            node = {**target, **siblings} if isinstance(target, dict) and siblings else target
        return node, chain

    def inline(self, node: Any, chain: tuple[str, ...] = (), depth: int = 0) -> Any:
        """A copy of `node` with every local `$ref` replaced by (a copy of) its target."""
        self.nodes += 1
        if self.nodes > MAX_SCHEMA_NODES:
            raise _Invalid(f"A schema has more than {MAX_SCHEMA_NODES} values once its $refs are inlined.")
        if depth > MAX_REF_DEPTH:
            return {}
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                if not ref.startswith("#") or ref in chain:
                    return {}
                try:
                    target = self.lookup(ref)
                except (KeyError, IndexError):
                    raise _Invalid(f"Cannot resolve $ref {ref!r}.") from None
                resolved = self.inline(target, (*chain, ref), depth + 1)
                siblings = {k: self.inline(v, chain, depth + 1) for k, v in node.items() if k != "$ref"}
                if siblings and isinstance(resolved, dict):
                    return {**resolved, **siblings}
                return resolved
            return {k: self.inline(v, chain, depth + 1) for k, v in node.items()}
        if isinstance(node, list):
            return [self.inline(v, chain, depth + 1) for v in node]
        return node


# --- OpenAPI schema -> JSON Schema 2020-12 -------------------------------------------------------
_SCHEMA_MAPS = {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
_SCHEMA_VALUES = {
    "items",
    "additionalProperties",
    "not",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
    "unevaluatedProperties",
    "unevaluatedItems",
    "additionalItems",
}
_SCHEMA_LISTS = {"allOf", "anyOf", "oneOf", "prefixItems"}
_DROPPED_KEYWORDS = {"$schema", "$id", "$anchor", "$dynamicAnchor", "$dynamicRef", "$comment"}


def _json_schema(schema: Any, legacy: bool) -> Any:
    """Adapt an (inlined) OpenAPI schema: 3.0's `nullable` and boolean `exclusiveMinimum/Maximum`
    become their JSON Schema forms; keywords that would re-anchor or re-version it are dropped."""
    if isinstance(schema, bool):
        return schema
    if not isinstance(schema, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROPPED_KEYWORDS:
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _json_schema(sub, legacy) for name, sub in value.items()}
        elif key in _SCHEMA_VALUES and isinstance(value, dict | bool):
            out[key] = _json_schema(value, legacy)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_json_schema(sub, legacy) for sub in value]
        elif key == "items" and isinstance(value, list):  # draft-4 style tuple
            out["prefixItems"] = [_json_schema(sub, legacy) for sub in value]
        else:
            out[key] = value
    if legacy:
        for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
            if isinstance(out.get(exclusive), bool) and out.pop(exclusive) and bound in out:
                out[exclusive] = out.pop(bound)
        if out.pop("nullable", False) is True:
            kind = out.get("type")
            if isinstance(kind, str):
                out["type"] = [kind, "null"]
            if isinstance(out.get("enum"), list) and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
    return out


# --- naming -----------------------------------------------------------------------------------
def _base_name(method: str, path: str, operation: dict) -> str:
    operation_id = operation.get("operationId")
    if isinstance(operation_id, str):
        name = sanitize_name(operation_id)
        if name:
            return name
    return sanitize_name(f"{method} {path}") or method


def _arg_key(name: str, location: str, taken: set[str]) -> str:
    """The argument (property) key of a parameter: its name when that is a plain key, else a cleaned
    one; a clash with an earlier argument gets the location appended, then a number."""
    pattern, chars = (_PATH_ARG_KEY, _PATH_ARG_CHARS) if location == "path" else (_ARG_KEY, _ARG_CHARS)
    key = name if pattern.match(name) else (chars.sub("_", name).strip("_")[:48] or location)
    if key in taken:
        key = f"{key[:48]}_{location}"
    return unique_name(key, taken)


# --- operations -------------------------------------------------------------------------------
class _Operation:
    def __init__(self, method: str, path: str, path_item: dict, operation: dict) -> None:
        self.method = method
        self.path = path
        self.path_item = path_item
        self.operation = operation
        self.base_name = _base_name(method, path, operation)
        self.name = ""

    @property
    def label(self) -> str:
        operation_id = self.operation.get("operationId")
        suffix = f" ({operation_id})" if isinstance(operation_id, str) and operation_id else ""
        return f"{self.method.upper()} {self.path}{suffix}"

    def keys(self, prefix: str) -> set[str]:
        """Everything an `operations` filter entry may say to pick this operation."""
        keys = {self.base_name, f"{prefix}{self.base_name}", f"{self.method.upper()} {self.path}"}
        operation_id = self.operation.get("operationId")
        if isinstance(operation_id, str):
            keys.add(operation_id)
        return keys


def _operations(doc: dict, resolver: _Resolver) -> list[_Operation]:
    found = []
    for path, raw_item in doc["paths"].items():
        if not path.startswith("/"):
            raise _Invalid(f"The path {path!r} does not start with /.")
        item, _ = resolver.deref(raw_item)
        if not isinstance(item, dict):
            raise _Invalid(f"The path item {path} must be an object.")
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            if not isinstance(operation, dict):
                raise _Invalid(f"{method.upper()} {path} must be an object.")
            found.append(_Operation(method, path, item, operation))
    return found


def _select(
    operations: list[_Operation], wanted: list[str] | None, prefix: str, doc: dict
) -> list[_Operation]:
    if wanted is None:
        selected = operations
    else:
        if not isinstance(wanted, list | tuple) or not wanted or not all(isinstance(w, str) for w in wanted):
            raise _Invalid("A non-empty list of operationIds or tool names.", "operations")
        wanted_set = set(wanted)
        selected = [op for op in operations if op.keys(prefix) & wanted_set]
        known = set().union(*(op.keys(prefix) for op in operations)) if operations else set()
        unknown = [w for w in wanted if w not in known]
        if unknown:
            unsupported = {
                f"{m.upper()} {p}"
                for p, item in doc["paths"].items()
                if isinstance(item, dict)
                for m in UNSUPPORTED_METHODS
                if m in item
            }
            hint = " (OPTIONS and TRACE operations are not imported)" if set(unknown) & unsupported else ""
            raise _Invalid(f"Not in the document: {', '.join(unknown[:20])}{hint}.", "operations")
    if not selected:
        raise _Invalid("The document has no operations to import.")
    if len(selected) > MAX_OPERATIONS:
        raise _Invalid(
            f"The document has {len(selected)} operations; import at most {MAX_OPERATIONS} at a time "
            "(choose some with `operations`).",
            "operations",
        )
    return selected


def _server_url(op: _Operation, doc: dict, source_url: str | None) -> str:
    """The first server of the operation, path item or document, variables set to their defaults;
    a relative one is resolved against the URL the document was fetched from."""
    servers = None
    for scope in (op.operation, op.path_item, doc):
        if isinstance(scope.get("servers"), list) and scope["servers"]:
            servers = scope["servers"]
            break
    server = servers[0] if servers else {"url": "/"}
    url = server.get("url") if isinstance(server, dict) else None
    if not isinstance(url, str):
        raise _Invalid("The first server has no url; give base_url.", "base_url")
    variables = server.get("variables") if isinstance(server.get("variables"), dict) else {}

    def substitute(match: re.Match) -> str:
        variable = variables.get(match.group(1))
        default = variable.get("default") if isinstance(variable, dict) else None
        if default is None:
            raise _Invalid(
                f"The server variable {{{match.group(1)}}} in {url} has no default; give base_url.",
                "base_url",
            )
        return str(default)

    url = _TEMPLATE.sub(substitute, url)
    if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", url):
        if source_url is None:
            raise _Invalid(
                f"The server URL {url!r} is relative and the document has no URL to resolve it against; "
                "give base_url.",
                "base_url",
            )
        url = urljoin(source_url, url)
    return url


def _check_base(url: str, field: str) -> str:
    url = url.strip().rstrip("/")
    if "{" in url or "}" in url:
        raise _Invalid("The server URL may not contain { or }.", field)
    try:
        safe_http.check_url(url or "/", resolve=False)
    except safe_http.UnsafeURLError as exc:
        raise _Invalid(str(exc), field) from None
    return url


def _parameters(op: _Operation, resolver: _Resolver) -> list[dict]:
    """Path-item parameters overridden by the operation's, keyed by (name, in)."""
    merged: dict[tuple[str, str], dict] = {}
    for scope in (op.path_item, op.operation):
        raw = scope.get("parameters", [])
        if not isinstance(raw, list):
            raise _Invalid("parameters must be a list.")
        for entry in raw:
            param, chain = resolver.deref(entry)
            if not param:
                continue  # a cyclic parameter reference
            if (
                not isinstance(param, dict)
                or not isinstance(param.get("name"), str)
                or not param["name"]
                or not isinstance(param.get("in"), str)
                or param["in"] not in PARAMETER_LOCATIONS
            ):
                raise _Invalid("every parameter needs a name and in (path, query, header or cookie).")
            merged[(param["name"], param["in"])] = {"param": param, "chain": chain}
    return list(merged.values())


def _parameter_schema(param: dict, chain: tuple[str, ...], resolver: _Resolver, legacy: bool) -> Any:
    raw = param.get("schema")
    if raw is None and isinstance(param.get("content"), dict) and param["content"]:
        media = next(iter(param["content"].values()))
        raw = media.get("schema") if isinstance(media, dict) else None
    if raw is None:
        raw = {"type": "string"} if param["in"] == "path" else {}
    schema = _json_schema(resolver.inline(raw, chain), legacy)
    if isinstance(schema, dict):
        description = param.get("description")
        if isinstance(description, str) and description.strip() and "description" not in schema:
            schema = {**schema, "description": description.strip()}
        if "example" in param and "examples" not in schema and "example" not in schema:
            schema = {**schema, "examples": [param["example"]]}
        if param.get("deprecated") is True:
            schema = {**schema, "deprecated": True}
    return schema


def _json_media(content: Any) -> tuple[str, dict] | None:
    if not isinstance(content, dict):
        return None
    for media_type, media in content.items():
        if media_type.split(";")[0].strip().lower() == "application/json":
            return media_type, media if isinstance(media, dict) else {}
    for media_type, media in content.items():
        if "json" in media_type.lower():
            return media_type, media if isinstance(media, dict) else {}
    return None


def _description(op: _Operation, notes: list[str]) -> str:
    parts = []
    for key in ("summary", "description"):
        for scope in (op.operation, op.path_item):
            text = scope.get(key)
            if isinstance(text, str) and text.strip() and text.strip() not in parts:
                parts.append(text.strip())
                break
    if not parts:
        parts.append(f"{op.method.upper()} {op.path}")
    if op.operation.get("deprecated") is True:
        parts.append("Deprecated.")
    parts.extend(notes)
    text = "\n\n".join(parts)
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


def _tags(op: _Operation) -> list[str]:
    tags: list[str] = []
    raw = op.operation.get("tags")
    for tag in raw if isinstance(raw, list) else []:
        tag = str(tag).strip().lower()
        if TAG_PATTERN.match(tag) and tag not in tags:
            tags.append(tag)
    return tags[:MAX_TAGS]


def _tool_fields(op: _Operation, doc: dict, resolver: _Resolver, server: str, auth: dict | None) -> dict:
    legacy = doc["openapi"].startswith("3.0")
    resolver.nodes = 0  # the size budget is per tool
    skip_query = skip_header = None
    if isinstance(auth, dict) and isinstance(auth.get("name"), str):
        if auth.get("type") == "query":
            skip_query = auth["name"]
        elif auth.get("type") == "header":
            skip_header = auth["name"].lower()

    properties: dict[str, Any] = {}
    required: list[str] = []
    arguments_in: dict[str, Any] = {}
    taken: set[str] = set()
    placeholders: dict[str, str] = {}  # template name in the document -> argument key
    notes: list[str] = []
    entries = sorted(
        _parameters(op, resolver), key=lambda e: ["path", "query", "header", "cookie"].index(e["param"]["in"])
    )
    template_names = _TEMPLATE.findall(op.path)
    for entry in entries:
        param, chain = entry["param"], entry["chain"]
        name, location = param["name"], param["in"]
        if location == "cookie":
            continue
        if location == "path" and name not in template_names:
            continue  # declared but not in the template: nothing to fill
        if location == "header" and (name.lower() in IGNORED_HEADERS or name.lower() == skip_header):
            continue
        if location == "query" and name == skip_query:
            continue
        key = _arg_key(name, location, taken)
        properties[key] = _parameter_schema(param, chain, resolver, legacy)
        if location == "path":
            placeholders[name] = key
            arguments_in[key] = "path"
        else:
            arguments_in[key] = location if key == name else {"in": location, "name": name}
        if location == "path" or param.get("required") is True:
            required.append(key)
    for name in template_names:  # templated but not declared: still an argument
        if name not in placeholders:
            key = _arg_key(name, "path", taken)
            placeholders[name] = key
            properties[key] = {"type": "string"}
            arguments_in[key] = "path"
            required.append(key)

    raw_body = op.operation.get("requestBody")
    if raw_body is not None:
        body, chain = resolver.deref(raw_body)
        media = _json_media(body.get("content")) if isinstance(body, dict) else None
        if media is not None:
            _, media_object = media
            schema = _json_schema(resolver.inline(media_object.get("schema", {}), chain), legacy)
            description = body.get("description")
            if isinstance(schema, dict) and isinstance(description, str) and description.strip():
                schema = {**schema, "description": schema.get("description") or description.strip()}
            key = _arg_key("body", "body", taken)
            properties[key] = schema
            arguments_in[key] = "body_root"
            if body.get("required") is True:
                required.append(key)
        elif isinstance(body, dict) and isinstance(body.get("content"), dict) and body["content"]:
            kinds = ", ".join(list(body["content"])[:5])
            notes.append(f"Its request body ({kinds}) is not JSON and cannot be sent by this tool.")

    path = _TEMPLATE.sub(lambda m: "{" + placeholders.get(m.group(1), m.group(1)) + "}", op.path)
    config: dict[str, Any] = {"method": op.method.upper(), "url": server + path, "arguments_in": arguments_in}
    if auth is not None:
        config["auth"] = auth
    parameters_schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        parameters_schema["required"] = required
    return {
        "description": _description(op, notes),
        "parameters_schema": parameters_schema,
        "config": config,
        "tags": _tags(op),
    }


def _reraise(op: _Operation, exc: ServiceValidationError) -> ServiceValidationError:
    """A tool that does not validate: name the operation; auth errors belong to `auth`."""
    field, messages = next(iter(exc.detail.items())) if isinstance(exc.detail, dict) else ("", exc.detail)
    message = messages[0] if isinstance(messages, list) and messages else messages
    code = getattr(message, "code", "invalid")
    if field.startswith("config.auth"):
        return _error(str(message), field=field.removeprefix("config."), code=code)
    return _error(f"{op.label} ({field}): {message}", field="document", code=code)


# --- service ----------------------------------------------------------------------------------
def tools_plan_openapi(
    *,
    owner,
    document: str | bytes | dict | None = None,
    url: str | None = None,
    base_url: str | None = None,
    auth: dict | None = None,
    category: str = "",
    operations: list[str] | None = None,
    name_prefix: str = "",
    connection: str | None = None,
) -> list[dict]:
    """The tools an import would create, as tool_create keyword arguments; writes nothing.

    With `connection` (an API connection id) the tools' URLs are paths under the connection's
    base URL, which replaces the document's servers, and the connection supplies the auth.
    """
    if not isinstance(name_prefix, str) or not _PREFIX.match(name_prefix):
        raise _error("At most 48 letters, digits, underscores or hyphens.", field="name_prefix")
    if not isinstance(category, str) or len(category) > MAX_CATEGORY:
        raise _error(f"At most {MAX_CATEGORY} characters.", field="category")
    if auth is not None and not isinstance(auth, dict):
        raise _error("An object like {type, secret_id, name, username}.", field="auth")
    if base_url is not None and (not isinstance(base_url, str) or not base_url.strip()):
        raise _error("An http(s) URL.", field="base_url")
    try:
        doc, source_url = _load(document, url)
        resolver = _Resolver(doc)
        selected = _select(_operations(doc, resolver), operations, name_prefix, doc)
        fixed_server = _check_base(base_url, "base_url") if base_url is not None else None
        if connection:
            fixed_server = ""
        planned = []
        for op in selected:
            server = fixed_server if fixed_server is not None else None
            if server is None:
                server = _check_base(_server_url(op, doc, source_url), "base_url")
            try:
                fields = _tool_fields(op, doc, resolver, server, auth)
            except _Invalid as exc:
                if exc.field == "document":
                    exc.args = (f"{op.label}: {exc}",)
                raise
            if connection:
                fields["config"]["connection"] = str(connection)
            planned.append((op, fields))
    except _Invalid as exc:
        raise _error(str(exc), field=exc.field) from None
    taken = owner_tool_names(owner)
    plan = []
    for op, fields in planned:
        op.name = unique_name(f"{name_prefix}{op.base_name}"[:NAME_MAX], taken)
        plan.append({"name": op.name, "type": "http", "category": category, "operation": op, **fields})
    return plan


def tools_import_openapi(*, owner, **options: Any) -> list[Tool]:
    """Create one `http` tool per operation of an OpenAPI 3.x document, all or none.

    `document` is JSON/YAML text, bytes or a dict; or `url` is fetched through the safe HTTP client.
    `base_url` overrides the document's servers; `auth` goes into every tool's config; `operations`
    picks operations by operationId, tool name or "METHOD /path"; `name_prefix` starts every name;
    `connection` makes the tools use an API connection (see tools_plan_openapi).
    Raises ServiceValidationError naming the offending input (document, url, base_url, operations, ...).
    """
    plan = tools_plan_openapi(owner=owner, **options)
    with transaction.atomic():
        created = []
        for fields in plan:
            op = fields.pop("operation")
            try:
                tool = tool_create(owner=owner, **fields)
            except ServiceValidationError as exc:
                raise _reraise(op, exc) from exc
            created.append(tool)
    return created
