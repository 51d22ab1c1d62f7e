"""Master-data sync: pull skills, constraints, prompts and model configs in the export format
from another Agent Mesh instance or a catalogue served over HTTP (through the safe client),
and upsert them by natural key (owner + name) into the caller's master data.

The source is a URL, or an API connection the caller may use (its auth applied, `path` under
its base URL). Secrets are never synced: a model config whose secret (by name) is missing here
is created without it and inactive, and the report names it. Runs as an IntegrationJob (a
Celery task) whose params name the connection by id, never a credential.
"""

from typing import Any

from django.db import transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from agentmesh.core.audit import audited
from agentmesh.core.exceptions import ServiceValidationError, flatten_errors
from agentmesh.core.safe_http import SafeHTTPError, safe_request
from masterdata.models import Secret
from tools.connections import ConnectionUnavailable

from ..models import IntegrationJob, JobKind, JobStatus
from .bundle import (
    EXPORT_KINDS,
    IMPORTERS,
    ON_CONFLICT,
    BundleInvalid,
    _check_bundle,
    _Exporter,
    _import_secret,
    _Importer,
    _ItemError,
    _order_models,
    _prefixed,
    bundle_parse,
)
from .connections import _usable, api_connection_request

SYNC_KINDS = ("skills", "constraints", "prompts", "models")
SOURCE_MAX_BYTES = 10 * 1024 * 1024


ACCEPT = "application/json, application/yaml;q=0.9, */*;q=0.5"


def _bundle_from(response, *, field: str) -> Any:
    if response.status_code != 200:
        raise ServiceValidationError(f"The source answered HTTP {response.status_code}.", field=field)
    return bundle_parse(response.content, max_bytes=SOURCE_MAX_BYTES)


def sync_fetch(*, url: str, token: str | None = None) -> Any:
    """The bundle served at `url` (JSON or YAML), through the safe client."""
    headers = {"Accept": ACCEPT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = safe_request("GET", url, headers=headers, max_bytes=SOURCE_MAX_BYTES)
    except SafeHTTPError as exc:
        raise ServiceValidationError(str(exc), field="source") from exc
    return _bundle_from(response, field="source")


def sync_connection(*, connection_id: Any, owner) -> Any:
    """The API connection `owner` may use, or a 400 naming `connection`."""
    try:
        return _usable(connection_id, owner)
    except ConnectionUnavailable as exc:
        raise ServiceValidationError(str(exc), field="connection") from None


def sync_fetch_connection(*, connection_id: Any, owner, path: str = "") -> Any:
    """The bundle served at the connection's base URL + `path`, with the connection's auth."""
    connection = sync_connection(connection_id=connection_id, owner=owner)
    try:
        response = api_connection_request(
            connection=connection,
            method="GET",
            path=path,
            headers={"Accept": ACCEPT},
            max_bytes=SOURCE_MAX_BYTES,
        )
    except (ConnectionUnavailable, SafeHTTPError) as exc:
        raise ServiceValidationError(str(exc), field="connection") from None
    return _bundle_from(response, field="connection")


def _comparable(kind: str, item: dict) -> dict:
    item = {k: v for k, v in item.items() if k != "owner"}
    if kind == "prompts" and item.get("versions"):  # the current text, not the history
        last = item["versions"][-1]
        item["versions"] = [{"template": last.get("template"), "variables": last.get("variables") or []}]
    return item


def master_data_sync(
    *,
    bundle: Any,
    owner,
    kinds: list[str] | None = None,
    dry_run: bool = False,
    on_conflict: str = "overwrite",
) -> dict:
    """Upsert the master data of `bundle` into `owner`'s. Report per item: created, updated,
    unchanged, conflict (exists and differs, on_conflict=skip), renamed, error. Items are
    independent (one failing does not stop the others); a dry run writes nothing."""
    _check_bundle(bundle)
    if on_conflict not in ON_CONFLICT:
        raise ServiceValidationError(f"One of: {', '.join(ON_CONFLICT)}.", field="on_conflict")
    wanted = [k for k in (kinds or SYNC_KINDS) if k in SYNC_KINDS]
    imp = _Importer(actor=owner, owner=owner, on_conflict="overwrite", keep_owners=False)
    exporter = _Exporter(user=owner, system=False)
    report: list[dict] = []
    with transaction.atomic():
        for name in SYNC_KINDS:
            items = bundle.get(name) or []
            if name not in wanted:
                continue
            kind = EXPORT_KINDS[name]
            ordered = _order_models(items) if name == "models" else list(enumerate(items))
            for index, item in ordered:
                path = f"{name}[{index}]"
                report.append(_sync_item(imp, exporter, kind, item, path, on_conflict))
        if dry_run:
            transaction.set_rollback(True)
    counts: dict[str, int] = {}
    for entry in report:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    return {"dry_run": dry_run, "counts": counts, "items": report}


def _sync_item(imp: _Importer, exporter: _Exporter, kind, item: Any, path: str, on_conflict: str) -> dict:
    name = item.get("name") if isinstance(item, dict) else None
    entry: dict[str, Any] = {"kind": kind.name, "name": name if isinstance(name, str) else ""}
    notes: list[str] = []
    try:
        if not isinstance(item, dict) or not isinstance(name, str) or not name.strip():
            raise _ItemError(
                [{"field": f"{path}.name", "code": "required", "message": "A name is required."}]
            )
        item = {k: v for k, v in item.items() if k != "owner"}
        owner = imp.owner
        if kind.name == "models":
            item = _without_secret_value(imp, item, owner, path, notes)
        existing = kind.model.objects.filter(owner=owner, name=name.strip()).first()
        with transaction.atomic():
            if existing is None:
                obj = IMPORTERS[kind.name](imp, item, owner, None, path, notes)
                entry["status"] = "created"
            elif _comparable(kind.name, exporter.item(kind, existing)) == _comparable(kind.name, item):
                obj, entry["status"] = existing, "unchanged"
            elif on_conflict == "skip":
                obj, entry["status"] = existing, "conflict"
            elif on_conflict == "rename":
                max_length = kind.model._meta.get_field("name").max_length
                renamed = {**item, "name": imp.free_name(kind.model, owner, name, max_length)}
                obj = IMPORTERS[kind.name](imp, renamed, owner, None, path, notes)
                entry.update(status="renamed", new_name=obj.name)
            else:
                if kind.name == "prompts" and item.get("versions"):
                    item = {**item, "versions": item["versions"][-1:]}
                obj = IMPORTERS[kind.name](imp, item, owner, existing, path, notes)
                entry["status"] = "updated"
        imp.mapping[(kind.name, owner.pk, name)] = obj
        entry["id"] = str(obj.pk)
    except _ItemError as exc:
        entry.update(status="error", errors=exc.errors)
    except ValidationError as exc:
        entry.update(status="error", errors=_prefixed(flatten_errors(exc.detail), path))
    except TypeError as exc:
        entry.update(status="error", errors=[{"field": path, "code": "invalid", "message": str(exc)}])
    if notes:
        entry["notes"] = notes
    return entry


def _without_secret_value(imp: _Importer, item: dict, owner, path: str, notes: list[str]) -> dict:
    """A model's secret is linked by name; a missing one is created without a value (never
    synced) and the model stays inactive until the value is set."""
    ref = item.get("api_key_secret")
    if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
        return item
    ref = {"name": ref["name"]}  # always the caller's own secret of that name
    item = {**item, "api_key_secret": ref}
    secret = Secret.objects.filter(owner=owner, name=ref["name"]).first()
    if secret is None:
        secret = _import_secret(imp, {"name": ref["name"], "description": ""}, owner, None, path, [])
        notes.append(f"secret {ref['name']!r} was missing: created without a value, set it")
    if not secret.encrypted_value:
        item["is_active"] = False
        notes.append(f"inactive: its secret {ref['name']!r} has no value yet")
    return item


# --- the job ----------------------------------------------------------------------------------
@transaction.atomic
def sync_job_start(
    *,
    owner,
    url: str | None = None,
    connection: Any = None,
    path: str = "",
    kinds: list[str] | None,
    dry_run: bool,
    on_conflict: str,
) -> IntegrationJob:
    """Record a sync job from `url` or from an API connection (+ `path`) and enqueue it after
    commit. Its params hold the URL or the connection's id, never a secret."""
    if on_conflict not in ON_CONFLICT:
        raise ServiceValidationError(f"One of: {', '.join(ON_CONFLICT)}.", field="on_conflict")
    if (url is None) == (connection is None):
        raise ServiceValidationError("Give either source (a URL) or connection.", field="source")
    if url is not None:
        origin: dict[str, Any] = {"source": url}
    else:
        if path and not path.startswith("/"):
            raise ServiceValidationError("A path starting with /.", field="path")
        found = sync_connection(connection_id=connection, owner=owner)
        origin = {"connection": str(found.pk), "path": path}
    job = IntegrationJob.objects.create(
        kind=JobKind.SYNC_MASTER_DATA,
        owner=owner,
        params={
            **origin,
            "kinds": list(kinds or SYNC_KINDS),
            "dry_run": dry_run,
            "on_conflict": on_conflict,
        },
    )
    audited("create", job, actor=owner)
    from ..tasks.bundle import run_integration_job

    transaction.on_commit(lambda: run_integration_job.delay(str(job.pk)))
    return job


def integration_job_run(*, job_id) -> IntegrationJob | None:
    """Run a queued job once (a redelivered message finds it running or finished: nothing to do)."""
    with transaction.atomic():
        job = IntegrationJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status != JobStatus.QUEUED:
            return job
        job.status, job.started_at = JobStatus.RUNNING, timezone.now()
        job.save(update_fields=["status", "started_at", "updated_at"])
    params = job.params
    try:
        if params.get("connection"):  # the owner must still be allowed to use it
            bundle = sync_fetch_connection(
                connection_id=params["connection"], owner=job.owner, path=params.get("path") or ""
            )
        else:
            bundle = sync_fetch(url=params["source"])
        report = master_data_sync(
            bundle=bundle,
            owner=job.owner,
            kinds=params.get("kinds"),
            dry_run=bool(params.get("dry_run")),
            on_conflict=params.get("on_conflict", "overwrite"),
        )
        job.status, job.report, job.error = JobStatus.SUCCEEDED, report, ""
    except (ValidationError, BundleInvalid) as exc:
        errors = flatten_errors(exc.detail)
        job.status, job.error = (
            JobStatus.FAILED,
            "; ".join(f"{e['field']}: {e['message']}" for e in errors)[:2000],
        )
    job.finished_at = timezone.now()
    with transaction.atomic():
        job.save(update_fields=["status", "report", "error", "finished_at", "updated_at"])
        audited("update", job, changes={"status": job.status})
    return job
