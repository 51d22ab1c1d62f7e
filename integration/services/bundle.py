"""Export and import of a whole setup as one versioned bundle (`kind: AgentMeshExport`).

The bundle (JSON or YAML, the same tree):

    apiVersion: agentmesh/v1
    kind: AgentMeshExport
    metadata: {exported_at, exported_by, scope: user|system, include: [...], counts: {...}}
    secrets:     [{name, description}]                    # never a value
    skills:      [{name, slug, category, type, description, tags, input_schema, output_schema, is_active}]
    constraints: [{name, description, type, rules, is_active}]
    prompts:     [{name, description, category, tags, is_active, versions: [{version, template, variables}]}]
    models:      [{name, provider, model_name, …, api_key_secret: REF|null, fallback: REF|null}]
    tools:       [{name, description, category, type, parameters_schema, output_schema, config, …}]
    agents:      [{name, description, model: REF, prompt: REF|null, tools: [REF], skills: [REF], …}]
    workflows:   [{name, description, status, tags, versions: [{version, definition}]}]
    templates:   [{name, description, kind, category, tags, versions: [{number, changelog, parameters, body, checksum}]}]

Every item of a system (admin) export carries `owner` (a username). A reference REF is
`{"name": …}` (plus `"owner"` when the referenced object belongs to someone else than the item,
or in a system export). Ids inside tool configs and workflow definitions (`agent_id`, `tool_id`,
`workflow_id`, `secret_id`) are replaced by `{"$ref": KIND, "name": …}` and mapped back to the
new ids on import. Ids and timestamps are never exported, nor statuses (imported agents and
tools start as drafts: validate and deploy them again) or agent deploy snapshots.

Import validates every item with the owning app's create/update service inside one
transaction; any error (or `dry_run`) rolls the whole import back, so a bad last item writes
nothing. Templates use templates_app's own exchange format (its metadata flattened into the
item, its versions as they are) and are imported through `template_import`; on `overwrite`
the versions that differ are added as new versions. Secrets are created without a value (`needs_value`: re-enter it), and model configs
that reference one are created inactive; both are named in the report.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from agentmesh.core.audit import audited
from agentmesh.core.exceptions import ServiceValidationError, flatten_errors
from agentmesh.core.permissions import has_object_action, is_admin
from agents.models import Agent
from agents.services import agent_create, agent_update
from masterdata.models import Constraint, ModelConfig, Prompt, Secret, Skill
from masterdata.services import (
    constraint_create,
    constraint_update,
    ensure_unique_per_owner,
    model_config_create,
    model_config_update,
    prompt_create,
    prompt_update,
    secret_update,
    skill_create,
    skill_update,
)
from templates_app import blueprint as template_blueprint
from templates_app.models import Template
from templates_app.services import template_import, template_update
from tools.models import Tool
from tools.services import tool_create, tool_update
from workflows.models import Workflow
from workflows.services import workflow_create, workflow_update

API_VERSION = "agentmesh/v1"
BUNDLE_KIND = "AgentMeshExport"
ON_CONFLICT = ("skip", "overwrite", "rename")
NEEDS_VALUE_MASK = "(needs value)"
MAX_ITEMS = 5000  # per bundle, all kinds together
ID_KEYS = {"agent_id": "agents", "tool_id": "tools", "workflow_id": "workflows", "secret_id": "secrets"}
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


class BundleInvalid(ServiceValidationError):
    """The bundle as a whole cannot be read (wrong kind or version, not a mapping…)."""


# --- kinds ---------------------------------------------------------------------------------
@dataclass
class Kind:
    name: str
    model: type | None
    fields: tuple[str, ...]
    master_data: bool = False
    # Optional custom hooks for kinds added later (e.g. templates): export one object, import one item.
    export_item: Callable | None = None
    import_item: Callable | None = None
    extra: dict = field(default_factory=dict)


SKILL_EXPORT = (
    "name", "slug", "category", "type", "description", "tags", "input_schema", "output_schema", "is_active",
)  # fmt: skip
CONSTRAINT_EXPORT = ("name", "description", "type", "rules", "is_active")
PROMPT_EXPORT = ("name", "description", "category", "tags", "is_active")
MODEL_EXPORT = (
    "name", "description", "provider", "model_name", "base_url", "api_version", "context_window",
    "default_parameters", "input_price_per_million", "output_price_per_million", "is_active",
)  # fmt: skip
TOOL_EXPORT = (
    "name", "description", "category", "type", "parameters_schema", "output_schema", "config", "tags",
    "timeout_seconds", "max_retries", "retry_non_idempotent", "test_cases",
)  # fmt: skip
AGENT_EXPORT = (
    "name",
    "description",
    "prompt_variables",
    "system_prompt",
    "memory",
    "response_format",
    "parameters",
)
WORKFLOW_EXPORT = ("name", "description", "status", "tags")
TEMPLATE_EXPORT = ("name", "description", "kind", "category", "tags")  # the exchange format's metadata

# In import order (references point backwards: a template's blueprint may name any of the above).
EXPORT_KINDS: dict[str, Kind] = {
    "secrets": Kind("secrets", Secret, ("name", "description"), master_data=True),
    "skills": Kind("skills", Skill, SKILL_EXPORT, master_data=True),
    "constraints": Kind("constraints", Constraint, CONSTRAINT_EXPORT, master_data=True),
    "prompts": Kind("prompts", Prompt, PROMPT_EXPORT, master_data=True),
    "models": Kind("models", ModelConfig, MODEL_EXPORT, master_data=True),
    "tools": Kind("tools", Tool, TOOL_EXPORT),
    "agents": Kind("agents", Agent, AGENT_EXPORT),
    "workflows": Kind("workflows", Workflow, WORKFLOW_EXPORT),
    "templates": Kind("templates", Template, TEMPLATE_EXPORT),
}
MASTER_DATA_KINDS = tuple(name for name, kind in EXPORT_KINDS.items() if kind.master_data)


def available_kinds() -> list[str]:
    return [name for name, kind in EXPORT_KINDS.items() if kind.model is not None]


# --- export --------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    return copy.deepcopy(value)


class _Exporter:
    def __init__(self, *, user, system: bool):
        self.user, self.system = user, system

    def ref(self, obj, item_owner_id) -> dict | None:
        if obj is None:
            return None
        ref = {"name": obj.name}
        if self.system or obj.owner_id != item_owner_id:
            ref["owner"] = obj.owner.username
        return ref

    def id_ref(self, kind: str, value: Any, owner_id) -> Any:
        model = EXPORT_KINDS[kind].model
        obj = model.objects.select_related("owner").filter(pk=value).first() if _is_uuid(value) else None
        if obj is None:
            return value
        return {"$ref": kind, **self.ref(obj, owner_id)}

    def replace_ids(self, data: Any, owner_id) -> Any:
        if isinstance(data, dict):
            return {
                key: self.id_ref(ID_KEYS[key], value, owner_id)
                if key in ID_KEYS and isinstance(value, str)
                else self.replace_ids(value, owner_id)
                for key, value in data.items()
            }
        if isinstance(data, list):
            return [self.replace_ids(value, owner_id) for value in data]
        return data

    def item(self, kind: Kind, obj) -> dict:
        item = {"owner": obj.owner.username} if self.system else {}
        item.update({name: _jsonable(getattr(obj, name)) for name in kind.fields})
        if kind.name == "prompts":
            item["versions"] = [
                {"version": v.version, "template": v.template, "variables": v.variables}
                for v in obj.versions.order_by("version")
            ]
        elif kind.name == "models":
            item["api_key_secret"] = self.ref(obj.api_key_secret, obj.owner_id)
            item["fallback"] = self.ref(obj.fallback, obj.owner_id)
        elif kind.name == "tools":
            item["config"] = self.replace_ids(item["config"], obj.owner_id)
        elif kind.name == "agents":
            item["model"] = self.ref(obj.model, obj.owner_id)
            item["prompt"] = self.ref(obj.prompt, obj.owner_id)
            for name in ("tools", "skills", "constraints"):
                item[name] = [self.ref(o, obj.owner_id) for o in getattr(obj, name).select_related("owner")]
                item[name].sort(key=lambda r: (r.get("owner", ""), r["name"]))
        elif kind.name == "workflows":
            item["versions"] = [
                {"version": v.version, "definition": self.replace_ids(v.definition, obj.owner_id)}
                for v in obj.versions.order_by("version")
            ]
        elif kind.name == "templates":  # templates_app's exchange format, metadata flattened
            document = template_blueprint.document_for(obj, obj.versions.order_by("number"))
            item.update(document["metadata"])
            item["versions"] = document["versions"]
        return item


def bundle_export(
    *, user, include: list[str] | None = None, ids: list | None = None, whole_system: bool | None = None
) -> dict:
    """The export bundle of what `user` owns (an admin, or `whole_system` with user None for a
    management command: everything), as a JSON-able dict. `include` limits the kinds; `ids`
    limits the objects (of every included kind) to these ids."""
    system = is_admin(user) if whole_system is None else whole_system
    if user is None and not system:
        raise ServiceValidationError("Export whose data? Give a user.", field="owner")
    kinds = [k for k in (include or available_kinds()) if k in EXPORT_KINDS]
    exporter = _Exporter(user=user, system=system)
    bundle: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": BUNDLE_KIND,
        "metadata": {
            "exported_at": timezone.now().isoformat(),
            "exported_by": user.username if user else None,
            "scope": "system" if system else "user",
            "include": kinds,
            "counts": {},
        },
    }
    for name in kinds:
        kind = EXPORT_KINDS[name]
        if kind.model is None:
            continue  # hook not filled yet
        queryset = kind.model.objects.select_related("owner").order_by("created_at", "pk")
        if not system:
            queryset = queryset.filter(owner=user)
        if ids:
            queryset = queryset.filter(pk__in=[i for i in ids if _is_uuid(str(i))])
        export_item = kind.export_item or (lambda obj, kind=kind: exporter.item(kind, obj))
        bundle[name] = [export_item(obj) for obj in queryset]
        bundle["metadata"]["counts"][name] = len(bundle[name])
    return bundle


def _is_uuid(value: Any) -> bool:
    return isinstance(value, str) and bool(UUID_RE.match(value))


# --- import --------------------------------------------------------------------------------
class _ItemError(Exception):
    def __init__(self, errors: list[dict]):
        self.errors = errors


def _error(path: str, message: str, code: str = "invalid") -> _ItemError:
    return _ItemError([{"field": path, "code": code, "message": message}])


@dataclass
class _Importer:
    actor: Any
    owner: Any
    on_conflict: str
    keep_owners: bool  # a system bundle imported by an admin (or the system): items keep their owner
    report: list[dict] = field(default_factory=list)
    mapping: dict = field(default_factory=dict)  # (kind, owner_id, name) -> object
    users: dict = field(default_factory=dict)

    # references ----------------------------------------------------------------------------
    def user_named(self, username: str, path: str):
        if username not in self.users:
            self.users[username] = get_user_model().objects.filter(username=username).first()
        user = self.users[username]
        if user is None:
            raise _error(path, f"No user {username!r}.", "not_found")
        return user

    def item_owner(self, item: dict, path: str):
        username = item.get("owner")
        if username and self.keep_owners:
            return self.user_named(username, f"{path}.owner")
        if self.owner is None:
            raise _error(f"{path}.owner", "Whose is this item? Import with an owner.", "required")
        return self.owner

    def resolve(self, kind: str, ref: Any, owner, path: str):
        if ref is None:
            return None
        if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
            raise _error(path, 'A reference is {"name": …} (and "owner" for another user\'s object).')
        ref_owner = self.user_named(ref["owner"], f"{path}.owner") if ref.get("owner") else owner
        obj = self.mapping.get((kind, ref_owner.pk, ref["name"]))
        if obj is None:
            obj = EXPORT_KINDS[kind].model.objects.filter(owner=ref_owner, name=ref["name"]).first()
        checker = self.actor or (None if self.keep_owners else owner)  # None: the system, trusted
        if obj is None or (checker is not None and not has_object_action(checker, obj, "use")):
            raise _error(path, f"No {kind[:-1]} named {ref['name']!r} that you may use.", "not_found")
        return obj

    def remap_ids(self, data: Any, owner, path: str) -> Any:
        if isinstance(data, dict):
            if "$ref" in data:
                kind = data["$ref"]
                if kind not in ID_KEYS.values():
                    raise _error(f"{path}.$ref", f"Unknown reference kind {kind!r}.")
                return str(self.resolve(kind, {k: v for k, v in data.items() if k != "$ref"}, owner, path).pk)
            return {key: self.remap_ids(value, owner, f"{path}.{key}") for key, value in data.items()}
        if isinstance(data, list):
            return [self.remap_ids(value, owner, f"{path}[{i}]") for i, value in enumerate(data)]
        return data

    # conflicts ------------------------------------------------------------------------------
    def free_name(self, model, owner, name: str, max_length: int) -> str:
        n = 2
        while True:
            suffix = f"-{n}"
            candidate = name[: max_length - len(suffix)] + suffix
            if not model.objects.filter(owner=owner, name=candidate).exists():
                return candidate
            n += 1

    # one item ------------------------------------------------------------------------------
    def import_item(self, kind: Kind, item: Any, path: str) -> None:
        if not isinstance(item, dict):
            raise _error(path, "Each item is an object.")
        allowed = {"owner", *kind.fields, *KIND_EXTRA_FIELDS.get(kind.name, ())}
        unknown = sorted(set(item) - allowed)
        if unknown:
            raise _error(f"{path}.{unknown[0]}", "Unknown field.", "unknown_field")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _error(f"{path}.name", "A name is required.", "required")
        owner = self.item_owner(item, path)
        existing = kind.model.objects.filter(owner=owner, name=name.strip()).first()
        outcome, notes = "created", []
        if existing is not None:
            if self.on_conflict == "skip":
                self.mapping[(kind.name, owner.pk, name)] = existing
                self.report.append(
                    {"kind": kind.name, "name": name, "status": "skipped", "id": str(existing.pk)}
                )
                return
            if self.on_conflict == "rename":
                max_length = kind.model._meta.get_field("name").max_length
                item = {**item, "name": self.free_name(kind.model, owner, name, max_length)}
                existing, outcome = None, "renamed"
            else:
                outcome = "updated"
        obj = IMPORTERS[kind.name](self, item, owner, existing, path, notes)
        self.mapping[(kind.name, owner.pk, name)] = obj
        entry = {"kind": kind.name, "name": name, "status": outcome, "id": str(obj.pk)}
        if outcome == "renamed":
            entry["new_name"] = obj.name
        if notes:
            entry["notes"] = notes
        self.report.append(entry)


def _fields(item: dict, names: tuple[str, ...], skip: tuple[str, ...] = ("name",)) -> dict:
    return {name: item[name] for name in names if name in item and name not in skip}


def _import_secret(imp: _Importer, item, owner, existing, path, notes):
    if existing is not None:
        return secret_update(secret=existing, description=item.get("description", existing.description))
    secret = Secret(
        owner=owner,
        name=item["name"].strip(),
        description=item.get("description") or "",
        encrypted_value="",
        mask=NEEDS_VALUE_MASK,  # what the API and admin show instead of a masked value
    )
    ensure_unique_per_owner(secret, "name")
    secret.save()
    audited("create", secret, actor=imp.actor)
    notes.append("needs_value: created without a value; set it before use")
    return secret


def _import_prompt(imp: _Importer, item, owner, existing, path, notes):
    versions = item.get("versions") or []
    if not isinstance(versions, list) or not all(isinstance(v, dict) for v in versions) or not versions:
        raise _error(f"{path}.versions", "A list of at least one {version, template, variables}.")
    fields = _fields(item, PROMPT_EXPORT)
    first, *rest = versions
    with _errors_under(f"{path}.versions[0]", "template"):
        if existing is None:
            prompt = prompt_create(
                owner=owner, actor=imp.actor, name=item["name"], **_version_fields(first), **fields
            )
        else:
            prompt = prompt_update(prompt=existing, actor=imp.actor, **fields, **_version_fields(first))
    for index, version in enumerate(rest, start=1):
        with _errors_under(f"{path}.versions[{index}]", "template"):
            prompt = prompt_update(prompt=prompt, actor=imp.actor, **_version_fields(version))
    return prompt


def _version_fields(version: dict) -> dict:
    return {"template": version.get("template", ""), "variables": version.get("variables") or []}


def _import_model(imp: _Importer, item, owner, existing, path, notes):
    fields = _fields(item, MODEL_EXPORT)
    fields["api_key_secret"] = imp.resolve(
        "secrets", item.get("api_key_secret"), owner, f"{path}.api_key_secret"
    )
    fields["fallback"] = imp.resolve("models", item.get("fallback"), owner, f"{path}.fallback")
    secret = fields["api_key_secret"]
    if secret is not None and not secret.encrypted_value and fields.get("is_active", True):
        fields["is_active"] = False
        notes.append(f"inactive: its secret {secret.name!r} has no value yet")
    if existing is None:
        return model_config_create(owner=owner, actor=imp.actor, name=item["name"], **fields)
    return model_config_update(model_config=existing, actor=imp.actor, **fields)


def _import_simple(create, update, names, instance_arg):
    def run(imp: _Importer, item, owner, existing, path, notes):
        fields = _fields(item, names)
        if existing is None:
            return create(owner=owner, name=item["name"], **fields)
        return update(**{instance_arg: existing}, **fields)

    return run


def _import_tool(imp: _Importer, item, owner, existing, path, notes):
    fields = _fields(item, TOOL_EXPORT, skip=("name", "type"))
    fields["config"] = imp.remap_ids(item.get("config") or {}, owner, f"{path}.config")
    if existing is None:
        return tool_create(owner=owner, name=item["name"], type=item.get("type", ""), **fields)
    return tool_update(tool=existing, type=item.get("type", existing.type), **fields)


def _import_agent(imp: _Importer, item, owner, existing, path, notes):
    fields = _fields(item, AGENT_EXPORT)
    fields["model"] = imp.resolve("models", item.get("model"), owner, f"{path}.model")
    if fields["model"] is None:
        raise _error(f"{path}.model", "An agent needs a model.", "required")
    fields["prompt"] = imp.resolve("prompts", item.get("prompt"), owner, f"{path}.prompt")
    for name in ("tools", "skills", "constraints"):
        refs = item.get(name) or []
        if not isinstance(refs, list):
            raise _error(f"{path}.{name}", "A list of references.")
        fields[name] = [imp.resolve(name, ref, owner, f"{path}.{name}[{i}]") for i, ref in enumerate(refs)]
    if existing is None:
        model = fields.pop("model")
        return agent_create(owner=owner, name=item["name"], model=model, **fields)
    return agent_update(agent=existing, **fields)


def _import_workflow(imp: _Importer, item, owner, existing, path, notes):
    versions = item.get("versions") or []
    if not isinstance(versions, list) or not all(isinstance(v, dict) for v in versions) or not versions:
        raise _error(f"{path}.versions", "A list of at least one {version, definition}.")
    fields = _fields(item, WORKFLOW_EXPORT)
    definitions = [
        imp.remap_ids(v.get("definition"), owner, f"{path}.versions[{i}].definition")
        for i, v in enumerate(versions)
    ]
    first, *rest = definitions
    with _errors_under(f"{path}.versions[0]", "definition"):
        if existing is None:
            workflow = workflow_create(
                owner=owner, actor=imp.actor, name=item["name"], definition=first, **fields
            )
        else:
            workflow = workflow_update(workflow=existing, actor=imp.actor, definition=first, **fields)
    for index, definition in enumerate(rest, start=1):
        with _errors_under(f"{path}.versions[{index}]", "definition"):
            workflow = workflow_update(workflow=workflow, actor=imp.actor, definition=definition)
    return workflow


def _import_template(imp: _Importer, item, owner, existing, path, notes):
    document = {
        "apiVersion": template_blueprint.API_VERSION,
        "kind": template_blueprint.EXCHANGE_KIND,
        "metadata": {name: item[name] for name in TEMPLATE_EXPORT if name in item},
        "versions": item.get("versions"),
    }
    try:
        if existing is None:
            return template_import(owner=owner, document=document, on_conflict="fail")[0]
        # overwrite: the metadata, then the versions that differ as new versions
        template_blueprint.check_document(document)
        fields = _fields(document["metadata"], TEMPLATE_EXPORT)
        template = template_update(template=existing, actor=imp.actor or owner, **fields)
        known = set(template.versions.values_list("checksum", flat=True))
        if any(
            template_blueprint.checksum(v["body"], v.get("parameters") or {}) not in known
            for v in document["versions"]
        ):
            template = template_import(owner=owner, document=document, on_conflict="new_version")[0]
        return template
    except ValidationError as exc:  # the exchange format's paths, as the bundle's
        raise _ItemError(
            [
                {**e, "field": f"{path}.{re.sub(r'^metadata[.]?', '', e.get('field') or '')}".rstrip(".")}
                for e in flatten_errors(exc.detail)
            ]
        ) from exc


@contextmanager
def _errors_under(version_path: str, versioned: str):
    """A service error on a versioned field (definition…, template…) is named by its version's
    path in the bundle; other fields by the item's."""
    try:
        yield
    except ValidationError as exc:
        item_path = version_path.rsplit(".versions[", 1)[0]
        errors = []
        for error in flatten_errors(exc.detail):
            name = error.get("field") or ""
            root = name.split(".")[0].split("[")[0]
            base = version_path if root in (versioned, "variables") else item_path
            errors.append({**error, "field": f"{base}.{name}" if name else base})
        raise _ItemError(errors) from exc


KIND_EXTRA_FIELDS = {
    "prompts": ("versions",),
    "models": ("api_key_secret", "fallback"),
    "agents": ("model", "prompt", "tools", "skills", "constraints"),
    "workflows": ("versions",),
    "templates": ("versions",),
}
IMPORTERS: dict[str, Callable] = {
    "secrets": _import_secret,
    "skills": _import_simple(skill_create, skill_update, SKILL_EXPORT, "skill"),
    "constraints": _import_simple(
        lambda **kw: constraint_create(type=kw.pop("type", ""), rules=kw.pop("rules", {}), **kw),
        constraint_update,
        CONSTRAINT_EXPORT,
        "constraint",
    ),
    "prompts": _import_prompt,
    "models": _import_model,
    "tools": _import_tool,
    "agents": _import_agent,
    "workflows": _import_workflow,
    "templates": _import_template,
}


def _order_models(items: list) -> list[tuple[int, Any]]:
    """Model configs whose fallback is in the bundle come after it."""
    indexed = list(enumerate(items))
    names = {item.get("name") for _, item in indexed if isinstance(item, dict)}
    done: set = set()
    ordered: list[tuple[int, Any]] = []
    while indexed:
        rest = []
        for index, item in indexed:
            fallback = item.get("fallback") if isinstance(item, dict) else None
            waiting = isinstance(fallback, dict) and fallback.get("name") in names - done
            (rest if waiting else ordered).append((index, item))
            if not waiting and isinstance(item, dict):
                done.add(item.get("name"))
        if len(rest) == len(indexed):  # a cycle: let the service report it
            ordered.extend(rest)
            break
        indexed = rest
    return ordered


def _check_bundle(bundle: Any) -> None:
    if not isinstance(bundle, dict):
        raise BundleInvalid("The bundle must be an object.", field="bundle")
    if bundle.get("kind") != BUNDLE_KIND:
        raise BundleInvalid(f"kind must be {BUNDLE_KIND!r}.", field="kind")
    if bundle.get("apiVersion") != API_VERSION:
        raise BundleInvalid(f"Unsupported apiVersion; this server reads {API_VERSION!r}.", field="apiVersion")
    unknown = set(bundle) - {"apiVersion", "kind", "metadata", *EXPORT_KINDS}
    if unknown:
        raise BundleInvalid("Unknown section.", field=sorted(unknown)[0])
    total = 0
    for name in EXPORT_KINDS:
        if name in bundle:
            if not isinstance(bundle[name], list):
                raise BundleInvalid("Must be a list.", field=name)
            total += len(bundle[name])
    if total > MAX_ITEMS:
        raise BundleInvalid(f"At most {MAX_ITEMS} items per bundle.", field="bundle")


def bundle_import(
    *,
    bundle: Any,
    actor,
    owner=None,
    dry_run: bool = False,
    on_conflict: str = "skip",
    kinds: list[str] | None = None,
) -> dict:
    """Import `bundle` for `owner` (default: the actor; an admin's import of a system export
    keeps each item's owner). Returns {"dry_run", "ok", "counts", "items": [...]}: per item its
    kind, name, status (created/updated/skipped/renamed/error) and, for an error, the fields.
    Nothing is written when any item fails or on a dry run."""
    _check_bundle(bundle)
    if on_conflict not in ON_CONFLICT:
        raise ServiceValidationError(f"One of: {', '.join(ON_CONFLICT)}.", field="on_conflict")
    metadata = bundle.get("metadata") if isinstance(bundle.get("metadata"), dict) else {}
    keep_owners = metadata.get("scope") == "system" and owner is None and (actor is None or is_admin(actor))
    imp = _Importer(actor=actor, owner=owner or actor, on_conflict=on_conflict, keep_owners=keep_owners)
    wanted = [k for k in (kinds or EXPORT_KINDS) if k in EXPORT_KINDS]
    with transaction.atomic():
        for name, kind in EXPORT_KINDS.items():
            items = bundle.get(name) or []
            if name not in wanted or not items:
                continue
            if kind.model is None and kind.import_item is None:
                unsupported = {"field": name, "code": "unsupported", "message": "Not importable here yet."}
                imp.report.append({"kind": name, "name": "", "status": "error", "errors": [unsupported]})
                continue
            ordered = _order_models(items) if name == "models" else list(enumerate(items))
            for index, item in ordered:
                path = f"{name}[{index}]"
                try:
                    with transaction.atomic():
                        imp.import_item(kind, item, path)
                except _ItemError as exc:
                    imp.report.append(_error_entry(name, item, exc.errors))
                except ValidationError as exc:
                    imp.report.append(_error_entry(name, item, _prefixed(flatten_errors(exc.detail), path)))
                except TypeError as exc:  # a service refused an unexpected field
                    imp.report.append(
                        _error_entry(name, item, [{"field": path, "code": "invalid", "message": str(exc)}])
                    )
        failed = any(entry["status"] == "error" for entry in imp.report)
        if failed or dry_run:
            transaction.set_rollback(True)
    counts: dict[str, int] = {}
    for entry in imp.report:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    return {
        "dry_run": dry_run,
        "ok": not failed,
        "written": not failed and not dry_run,
        "counts": counts,
        "items": imp.report,
    }


def _prefixed(errors: list[dict], path: str) -> list[dict]:
    return [{**e, "field": f"{path}.{e['field']}" if e.get("field") else path} for e in errors]


def _error_entry(kind: str, item: Any, errors: list[dict]) -> dict:
    name = item.get("name", "") if isinstance(item, dict) else ""
    return {"kind": kind, "name": name if isinstance(name, str) else "", "status": "error", "errors": errors}


# --- reading a bundle's text (API YAML body, upload, command, sync) -----------------------------
MAX_YAML_ALIASES = 50
MAX_BUNDLE_DEPTH = 64
MAX_BUNDLE_NODES = 500_000  # values in the tree as read, aliases expanded


class _BoundedSafeLoader(yaml.SafeLoader):
    """safe_load, with a bound on alias uses: a billion-laughs document is refused, not expanded."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_YAML_ALIASES:
                raise yaml.YAMLError(f"More than {MAX_YAML_ALIASES} YAML aliases.")
        return super().compose_node(parent, index)


def _check_shape(data: Any) -> None:
    """Refuse a tree nested too deeply or too large once aliases are expanded (iteratively)."""
    nodes, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_BUNDLE_NODES:
            raise BundleInvalid(f"The bundle has more than {MAX_BUNDLE_NODES} values.", field="file")
        if isinstance(value, dict | list):
            if depth > MAX_BUNDLE_DEPTH:
                raise BundleInvalid(
                    f"The bundle is nested deeper than {MAX_BUNDLE_DEPTH} levels.", field="file"
                )
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))


def bundle_parse(raw: bytes | str, *, max_bytes: int | None = None) -> Any:
    """A bundle from JSON or YAML text (YAML is a superset: one reader). Raises BundleInvalid."""
    limit = max_bytes or settings.MAX_REQUEST_BODY_BYTES
    if len(raw) > limit:
        raise BundleInvalid(f"The bundle is larger than {limit} bytes.", field="file")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BundleInvalid("The bundle is not UTF-8 text.", field="file") from exc
    try:
        data = yaml.load(raw, Loader=_BoundedSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, RecursionError) as exc:
        raise BundleInvalid(f"Not a readable JSON/YAML bundle: {str(exc)[:300]}", field="file") from exc
    _check_shape(data)
    return _plain(data)


def _plain(data: Any) -> Any:
    """YAML timestamps/dates become ISO strings, so the tree is JSON-able like a JSON body."""
    if isinstance(data, dict):
        return {str(k): _plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_plain(v) for v in data]
    if hasattr(data, "isoformat"):
        return data.isoformat()
    return data


def bundle_dump(bundle: dict, fmt: str = "json") -> str:
    if fmt == "yaml":
        return yaml.safe_dump(bundle, sort_keys=False, allow_unicode=True)
    return json.dumps(bundle, indent=2, ensure_ascii=False)
