"""Every write to templates: create (with version 1), update, new versions, delete, publish,
import; and instantiate, which creates the blueprint's resources through their own services in
one transaction (all or none). Preview (a read) lives here too: it shares the rendering."""

import uuid
from typing import Any

from django.db import transaction
from django.db.models import Max
from rest_framework.exceptions import PermissionDenied, ValidationError

from agentmesh.core.audit import audited
from agentmesh.core.exceptions import ConflictError, ServiceValidationError
from agentmesh.core.permissions import codename, is_admin
from agentmesh.core.signals import snapshot
from agents import services as agent_services
from agents.api.serializers import AgentSerializer
from agents.models import Agent
from masterdata.services import ensure_unique_per_owner, normalize_tags
from tools import services as tool_services
from tools.api.serializers import ToolSerializer
from tools.models import Tool
from workflows import services as workflow_services
from workflows.api.serializers import WorkflowSerializer
from workflows.models import Workflow

from . import blueprint
from .models import Template, TemplateInstance, TemplateKind, TemplateVersion

TEMPLATE_FIELDS = ("name", "description", "kind", "category", "tags", "archived")
NAME_MAX_CHARS = Template._meta.get_field("name").max_length
SERIALIZERS = {"tool": ToolSerializer, "agent": AgentSerializer, "workflow": WorkflowSerializer}
MODELS = {"tool": Tool, "agent": Agent, "workflow": Workflow}
PLACEHOLDER_ID = "00000000-0000-0000-0000-000000000000"


class UnresolvedReferences(ServiceValidationError):
    """References that name nothing the caller may use: one error per reference."""

    def __init__(self, missing: list[dict]):
        self.missing = missing
        ValidationError.__init__(
            self,
            {m["field"]: [f"No {m['kind']} named {m['name']!r} that you may use."] for m in missing},
            code="unresolved_reference",
        )


class _DryRun(Exception):
    pass


# --- validation ------------------------------------------------------------------------------
def _validate_template(template: Template) -> None:
    template.name = (template.name or "").strip()
    if not template.name:
        raise ServiceValidationError("The name may not be empty.", field="name", code="required")
    if len(template.name) > NAME_MAX_CHARS:
        raise ServiceValidationError(f"At most {NAME_MAX_CHARS} characters.", field="name")
    if template.kind not in TemplateKind.values:
        raise ServiceValidationError(f"One of: {', '.join(TemplateKind.values)}.", field="kind")
    template.tags = normalize_tags(template.tags)
    ensure_unique_per_owner(template, "name")


def _validate_blueprint(*, kind: str, body: Any, parameters: Any, actor) -> None:
    """Structure, parameters, and a dry run: the blueprint rendered with the parameters'
    defaults/examples must create, through the real services, in a transaction rolled back."""
    blueprint.check_body(kind, body)
    blueprint.check_parameters(parameters, body)
    params = blueprint.resolve_params(parameters or {}, blueprint.sample_params(parameters or {}))
    suffix = uuid.uuid4().hex[:6]
    names = {}
    for resource in body["resources"]:  # unique names: the actor's own resources may share them
        name = blueprint.render(resource["spec"].get("name"), params, "name")
        if isinstance(name, str) and name.strip():
            names[resource["key"]] = f"{name.strip()[:56]}-{suffix}"
    try:
        with transaction.atomic():
            _create_resources(
                body=body, parameters=parameters or {}, params=params, names=names, user=actor, deploy=False
            )
            raise _DryRun
    except _DryRun:
        pass
    except ValidationError as exc:
        raise ValidationError(_prefixed(exc.detail, "body")) from exc


def _prefixed(detail: Any, prefix: str) -> dict:
    if isinstance(detail, dict):
        return {f"{prefix}.{k}" if k != "non_field_errors" else prefix: v for k, v in detail.items()}
    return {prefix: detail}


def _new_version(template: Template, *, body, parameters, changelog: str, actor) -> TemplateVersion:
    number = (template.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    version = TemplateVersion.objects.create(
        template=template,
        number=number,
        body=body,
        parameters=parameters or {},
        changelog=changelog or "",
        checksum=blueprint.checksum(body, parameters or {}),
        created_by=actor if getattr(actor, "pk", None) else None,
    )
    audited("create", version, actor=actor)
    return version


# --- template writes -------------------------------------------------------------------------
@transaction.atomic
def template_create(
    *, owner, name: str, kind: str, body: Any, parameters: Any = None, changelog: str = "", **fields: Any
) -> Template:
    unknown = set(fields) - set(TEMPLATE_FIELDS)
    if unknown:
        raise TypeError(f"Unexpected template fields: {sorted(unknown)}")
    template = Template(owner=owner, name=name, kind=kind, **fields)
    _validate_template(template)
    _validate_blueprint(kind=template.kind, body=body, parameters=parameters, actor=owner)
    template.save()
    audited("create", template)
    version = _new_version(template, body=body, parameters=parameters, changelog=changelog, actor=owner)
    Template.objects.filter(pk=template.pk).update(latest_version=version)
    template.latest_version = version
    return template


@transaction.atomic
def template_update(
    *, template: Template, actor, body: Any = None, parameters: Any = None, changelog: str = "", **fields: Any
) -> Template:
    """Update the metadata; a body or parameters that differ from the latest version's make
    a new version (the kind cannot change)."""
    unknown = set(fields) - set(TEMPLATE_FIELDS)
    if unknown:
        raise TypeError(f"Unexpected template fields: {sorted(unknown)}")
    template = (
        Template.objects.select_for_update(of=("self",)).select_related("latest_version").get(pk=template.pk)
    )
    before = snapshot(template)
    if "kind" in fields and fields["kind"] != template.kind:
        raise ServiceValidationError("The kind of a template cannot change.", field="kind")
    for field, value in fields.items():
        setattr(template, field, value)
    _validate_template(template)
    latest = template.latest_version
    new_body = body if body is not None else latest.body
    new_parameters = parameters if parameters is not None else latest.parameters
    if blueprint.checksum(new_body, new_parameters or {}) != latest.checksum:
        _validate_blueprint(kind=template.kind, body=new_body, parameters=new_parameters, actor=actor)
        template.latest_version = _new_version(
            template, body=new_body, parameters=new_parameters, changelog=changelog, actor=actor
        )
    template.save()
    audited("update", template, before=before)
    return template


@transaction.atomic
def template_version_create(
    *, template: Template, actor, body: Any, parameters: Any = None, changelog: str = ""
):
    """A new immutable version (parameters omitted: the latest's); 409 when it is identical
    to the latest."""
    template = (
        Template.objects.select_for_update(of=("self",)).select_related("latest_version").get(pk=template.pk)
    )
    latest = template.latest_version
    if parameters is None and latest is not None:
        parameters = latest.parameters
    if latest is not None and blueprint.checksum(body, parameters or {}) == latest.checksum:
        raise ConflictError(f"Identical to the latest version ({latest.number}).")
    _validate_blueprint(kind=template.kind, body=body, parameters=parameters, actor=actor)
    before = snapshot(template)
    version = _new_version(template, body=body, parameters=parameters, changelog=changelog, actor=actor)
    template.latest_version = version
    template.save(update_fields=["latest_version", "updated_at"])
    audited("update", template, before=before)
    return version


@transaction.atomic
def template_delete(*, template: Template) -> None:
    """Delete the template and its versions; instances keep their resources, their version
    reference is nulled (the template's name and version number stay)."""
    before = snapshot(template)
    template.delete()
    audited("delete", template, before=before)


@transaction.atomic
def template_set_published(*, template: Template, published: bool, actor=None) -> Template:
    template = Template.objects.select_for_update().get(pk=template.pk)
    if template.published != published:
        before = snapshot(template)
        template.published = published
        template.save(update_fields=["published", "updated_at"])
        audited("publish" if published else "unpublish", template, before=before, actor=actor)
    return template


# --- instantiate / preview -------------------------------------------------------------------
def pick_version(template: Template, number: Any) -> TemplateVersion:
    if number in (None, ""):
        if template.latest_version_id is None:
            raise ServiceValidationError("The template has no version.", field="version")
        return TemplateVersion.objects.get(pk=template.latest_version_id)
    try:
        number = int(number)
    except (TypeError, ValueError):
        raise ServiceValidationError("A version number.", field="version") from None
    version = template.versions.filter(number=number).first()
    if version is None:
        raise ServiceValidationError(f"The template has no version {number}.", field="version")
    return version


def _rendered(body: dict, params: dict, names: dict | None) -> list[dict]:
    names = names or {}
    out = []
    for index, resource in enumerate(body["resources"]):
        spec = blueprint.render(resource["spec"], params, f"body.resources[{index}].spec")
        if resource["key"] in names:
            spec["name"] = names[resource["key"]]
        out.append({"key": resource["key"], "kind": resource["kind"], "spec": spec})
    return out


def _check_names(body: dict, names: Any) -> dict:
    if names in (None, {}):
        return {}
    if not isinstance(names, dict):
        raise ServiceValidationError("An object: resource key -> name.", field="names")
    keys = {r["key"] for r in body["resources"]}
    for key, name in names.items():
        if key not in keys:
            raise ServiceValidationError("No resource with this key.", field=f"names.{key}")
        if not isinstance(name, str) or not name.strip():
            raise ServiceValidationError("A non-empty name.", field=f"names.{key}")
    return names


def _check_role(resources: list[dict], user) -> None:
    """Instantiating creates objects: the caller's role must allow creating each kind."""
    if is_admin(user):
        return
    for kind in sorted({r["kind"] for r in resources}):
        model = MODELS[kind]
        if not user.has_perm(f"{model._meta.app_label}.{codename(model, 'add')}"):
            raise PermissionDenied(f"Your role may not create {kind}s.")


def _create_resources(*, body, parameters, params, names, user, deploy: bool) -> list[tuple[dict, Any]]:
    resources = _rendered(body, params, names)
    _check_role(resources, user)
    found, missing = blueprint.resolve_refs(resources, user)
    if missing:
        raise UnresolvedReferences(missing)
    created: list[tuple[dict, Any]] = []
    local_ids: dict[str, str] = {}
    for resource in blueprint.ordered(resources):
        kind, key = resource["kind"], resource["key"]
        payload = blueprint.substitute(resource["spec"], found, local_ids)
        serializer = SERIALIZERS[kind](data=payload)
        try:
            serializer.is_valid(raise_exception=True)
            data = dict(serializer.validated_data)
            if kind == "tool":
                obj = tool_services.tool_create(owner=user, **data)
            elif kind == "agent":
                obj = agent_services.agent_create(owner=user, **data)
            else:
                obj = workflow_services.workflow_create(owner=user, actor=user, **data)
            if deploy:
                obj = _deploy(kind, obj, user)
        except ValidationError as exc:
            raise ValidationError(_prefixed(exc.detail, f"resources.{key}")) from exc
        local_ids[key] = str(obj.pk)
        created.append((resource, obj))
    return created


def _deploy(kind: str, obj, user):
    if kind == "tool":
        checks = tool_services.tool_validate(tool=obj, actor=user)
        failed = [c for c in checks if not c.ok]
        if failed:
            raise ServiceValidationError(f"{failed[0].name}: {failed[0].message}", field="deploy")
        return tool_services.tool_deploy(tool=obj, actor=user)
    if kind == "agent":
        version, checks = agent_services.agent_deploy(agent=obj, actor=user)
        if version is None:
            failed = [c for c in checks if not c.ok]
            raise ServiceValidationError(f"{failed[0].name}: {failed[0].message}", field="deploy")
        obj.refresh_from_db()
    return obj  # a workflow needs no deploy


@transaction.atomic
def template_instantiate(
    *,
    template: Template,
    actor,
    version: Any = None,
    params: Any = None,
    names: Any = None,
    deploy: bool = False,
) -> tuple[TemplateVersion, list[TemplateInstance]]:
    """Create every resource of the version for `actor` (who owns them), all or none."""
    chosen = pick_version(template, version)
    values = blueprint.resolve_params(chosen.parameters, params)
    names = _check_names(chosen.body, names)
    created = _create_resources(
        body=chosen.body, parameters=chosen.parameters, params=values, names=names, user=actor, deploy=deploy
    )
    instances = []
    for resource, obj in created:
        instance = TemplateInstance.objects.create(
            version=chosen,
            template_name=template.name,
            version_number=chosen.number,
            resource_kind=resource["kind"],
            resource_id=obj.pk,
            resource_name=obj.name,
            local_key=resource["key"],
            created_by=actor,
        )
        instance.resource = obj
        instances.append(instance)
    audited(
        "instantiate",
        template,
        before=snapshot(template),
        actor=actor,
        details={
            "version": chosen.number,
            "resources": [{"kind": i.resource_kind, "id": str(i.resource_id)} for i in instances],
        },
    )
    return chosen, instances


def template_preview(*, template: Template, actor, version: Any = None, params: Any = None) -> dict:
    """Render the version and check it against what `actor` may use: writes nothing."""
    chosen = pick_version(template, version)
    values = blueprint.resolve_params(chosen.parameters, params)
    resources = _rendered(chosen.body, values, None)
    found, missing = blueprint.resolve_refs(resources, actor)
    references = [{"kind": kind, "name": name, "id": str(obj.pk)} for (kind, name), obj in found.items()]
    report = []
    for resource in resources:
        report.append({"key": resource["key"], "kind": resource["kind"], **_check(resource, found, actor)})
    valid = not missing and all(r["ok"] is not False for r in report)
    return {
        "version": chosen.number,
        "params": values,
        "resources": resources,
        "references": references,
        "missing": missing,
        "validation": report,
        "valid": valid,
    }


def _check(resource: dict, found: dict, actor) -> dict:
    """The create validation without the write. A field that references a resource of the
    same template (created at instantiate) is checked then."""
    kind, spec = resource["kind"], resource["spec"]
    deferred = blueprint.has_local_refs(spec)
    payload = blueprint.substitute(spec, found, {}, placeholder=None)
    if kind == "agent":  # a tool of the bundle is not there yet: check the others
        payload = {**payload, "tools": [t for t in payload.get("tools") or [] if t is not None]}
    serializer = SERIALIZERS[kind](data=payload)
    try:
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if kind == "tool":
            fields = {k: v for k, v in data.items()}
            tool_services._validate_tool(Tool(owner=actor, **fields))
        elif kind == "agent":
            fields, m2m = agent_services._split_fields(data)
            agent_services._validate_agent(Agent(owner=actor, **fields), changed=set(fields), m2m=m2m)
        else:
            workflow = Workflow(owner=actor, **data)
            workflow_services._validate(workflow, definition_changed=not deferred)
    except ValidationError as exc:
        from agentmesh.core.exceptions import flatten_errors

        errors = flatten_errors(exc.detail)
        return {"ok": False, "errors": errors, "deferred": deferred}
    return {"ok": True, "errors": [], "deferred": deferred}


# --- import ----------------------------------------------------------------------------------
ON_CONFLICT = ("fail", "rename", "new_version")


def _free_name(owner, name: str) -> str:
    taken = set(Template.objects.filter(owner=owner, name__startswith=name).values_list("name", flat=True))
    n = 2
    while f"{name} ({n})" in taken:
        n += 1
    return f"{name} ({n})"[:NAME_MAX_CHARS]


@transaction.atomic
def template_import(*, owner, document: Any, on_conflict: str = "fail") -> tuple[Template, bool]:
    """Create a template from the exchange format (every version, in order), or add its
    versions to the caller's template of the same name (`new_version`). Returns (template,
    created)."""
    if on_conflict not in ON_CONFLICT:
        raise ServiceValidationError(f"One of: {', '.join(ON_CONFLICT)}.", field="on_conflict")
    blueprint.check_document(document)
    meta = document["metadata"]
    existing = Template.objects.filter(owner=owner, name=meta["name"].strip()).first()
    if existing is not None and on_conflict == "fail":
        raise ConflictError(
            f"You have a template named {meta['name']!r}: import with on_conflict=rename or new_version."
        )
    versions = document["versions"]
    if existing is not None and on_conflict == "new_version":
        if existing.kind != meta["kind"]:
            raise ServiceValidationError("The existing template is of another kind.", field="metadata.kind")
        added = 0
        known = set(existing.versions.values_list("checksum", flat=True))
        for v in versions:
            if blueprint.checksum(v["body"], v.get("parameters") or {}) in known:
                continue
            template_version_create(
                template=existing,
                actor=owner,
                body=v["body"],
                parameters=v.get("parameters") or {},
                changelog=v.get("changelog", ""),
            )
            added += 1
        if not added:
            raise ConflictError("Every version of the document is already in the template.")
        return Template.objects.get(pk=existing.pk), False
    name = _free_name(owner, meta["name"].strip()) if existing is not None else meta["name"]
    first, rest = versions[0], versions[1:]
    try:
        template = template_create(
            owner=owner,
            name=name,
            kind=meta["kind"],
            description=meta.get("description", ""),
            category=meta.get("category", ""),
            tags=meta.get("tags", []),
            body=first["body"],
            parameters=first.get("parameters") or {},
            changelog=first.get("changelog", ""),
        )
        for index, v in enumerate(rest, start=1):
            try:
                template_version_create(
                    template=template,
                    actor=owner,
                    body=v["body"],
                    parameters=v.get("parameters") or {},
                    changelog=v.get("changelog", ""),
                )
            except ValidationError as exc:
                raise ValidationError(_prefixed(exc.detail, f"versions[{index}]")) from exc
    except ValidationError as exc:
        detail = exc.detail
        if isinstance(detail, dict) and not any(str(k).startswith("versions[") for k in detail):
            detail = {
                (f"metadata.{k}" if k in TEMPLATE_FIELDS else f"versions[0].{k}"): v
                for k, v in detail.items()
            }
        raise ValidationError(detail) from exc
    return template, True
