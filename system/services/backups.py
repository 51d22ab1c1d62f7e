"""Backups: start a backup job, run it, list/delete/prune archives, and restore one.

The archive formats live in `system.backup_formats`; this module decides where archives go
(BACKUP_STORAGE or BACKUP_DIR), keeps the Backup rows and audits every write.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.exceptions import NotFound

from agentmesh.core.audit import audited
from agentmesh.core.exceptions import ConflictError, ServiceValidationError
from agentmesh.core.signals import snapshot

from .. import backup_formats as formats
from ..models.backups import Backup, BackupFormat, BackupStatus

logger = logging.getLogger(__name__)

REQUESTED_FORMATS = ("auto", BackupFormat.PORTABLE.value, BackupFormat.PG_DUMP.value)

__all__ = [
    "REQUESTED_FORMATS",
    "backup_delete",
    "backup_format_resolve",
    "backup_open",
    "backup_prune",
    "backup_restore",
    "backup_run",
    "backup_start",
    "backup_storage",
    "backup_write_file",
]


def backup_storage(alias: str | None = None) -> Storage:
    """The storage backups go to: STORAGES[BACKUP_STORAGE], or the directory BACKUP_DIR.
    `alias`: the one a backup was written to ("" is BACKUP_DIR)."""
    alias = settings.BACKUP_STORAGE if alias is None else alias
    if alias:
        return storages[alias]
    return FileSystemStorage(location=str(settings.BACKUP_DIR))


def backup_format_resolve(requested: str) -> str:
    """`auto`: pg_dump on PostgreSQL when a compatible client is installed, otherwise portable."""
    if requested not in REQUESTED_FORMATS:
        raise ServiceValidationError(f"One of: {', '.join(REQUESTED_FORMATS)}.", field="format")
    if requested == BackupFormat.PORTABLE:
        return requested
    usable, why = formats.pg_dump_status()
    if requested == BackupFormat.PG_DUMP:
        if not usable:
            raise ServiceValidationError(f"pg_dump cannot be used here: {why}.", field="format")
        return requested
    return BackupFormat.PG_DUMP.value if usable else BackupFormat.PORTABLE.value


def _actor_name(actor) -> str:
    return getattr(actor, "username", "") or ""


@transaction.atomic
def backup_start(
    *, requested_format: str = "auto", note: str = "", actor=None, enqueue: bool = True
) -> Backup:
    """Record a backup job and (after commit) hand it to a worker. `enqueue=False`: the caller
    runs it (`backup_run`), as the management command does."""
    fmt = backup_format_resolve(requested_format)
    if len(note) > 500:
        raise ServiceValidationError("At most 500 characters.", field="note")
    backup = Backup.objects.create(
        requested_format=requested_format,
        format=fmt,
        note=note,
        requested_by=_actor_name(actor),
        storage=settings.BACKUP_STORAGE,
        database_vendor=connection.vendor,
    )
    audited("create", backup, actor=actor)
    if enqueue:
        from ..tasks.backups import run_backup

        transaction.on_commit(lambda: run_backup.delay(str(backup.pk)))
    return backup


def _write_archive(fmt: str, target) -> dict:
    if fmt == BackupFormat.PG_DUMP:
        return formats.write_pg_dump(target)
    return formats.write_portable(target)


def backup_run(*, backup_id: Any) -> Backup | None:
    """Run a pending backup job: snapshot, store, record size/checksum/schema, prune old ones.

    Only a pending job runs: a redelivered message finds it running (perhaps still, in another
    worker) or finished and leaves it alone. One whose worker died stays `running` until its
    time limit has passed; then it may be deleted, and a new backup started."""
    with transaction.atomic():
        backup = Backup.objects.select_for_update().filter(pk=backup_id).first()
        if backup is None or backup.status != BackupStatus.PENDING:
            return backup
        backup.status, backup.started_at = BackupStatus.RUNNING, timezone.now()
        backup.save(update_fields=["status", "started_at", "updated_at"])
    started = time.monotonic()
    try:
        stamp = backup.started_at.strftime("%Y%m%d-%H%M%S")
        name = f"agentmesh-{stamp}-{backup.format}-{str(backup.pk)[:8]}.zip"
        with tempfile.TemporaryDirectory(prefix="agentmesh-backup-") as workdir:
            path = Path(workdir) / name
            with open(path, "wb") as out:
                manifest = _write_archive(backup.format, out)
            sha256, size = formats.file_sha256(path), path.stat().st_size
            storage = backup_storage(backup.storage)
            with open(path, "rb") as source:
                stored = storage.save(name, File(source, name=name))
            backup.file_name = stored  # removed again below if the job fails from here on
            storage.save(f"{stored}.sha256", ContentFile(f"{sha256}  {Path(stored).name}\n".encode()))
        backup.status, backup.error = BackupStatus.SUCCEEDED, ""
        backup.file_name, backup.sha256, backup.size_bytes = stored, sha256, size
        backup.schema_version = manifest["schema_version"]
        backup.table_rows = {t["table"]: t["rows"] for t in manifest.get("tables", [])}
    except Exception as exc:  # the job records why it failed; nothing propagates to the worker
        logger.exception("Backup %s failed", backup.pk)
        backup.status, backup.error = BackupStatus.FAILED, str(exc)[:4000]
        with contextlib.suppress(Exception):
            _delete_files(backup)  # a partly stored archive
        backup.file_name = ""
    backup.duration_seconds = round(time.monotonic() - started, 3)
    backup.finished_at = timezone.now()
    with transaction.atomic():
        backup.save()
        audited("update", backup, changes={"status": backup.status})
    if backup.status == BackupStatus.SUCCEEDED:
        backup_prune()
    return backup


def backup_write_file(*, path: str | Path, requested_format: str = "auto") -> dict:
    """Write an archive to a local file (and `<path>.sha256` beside it), outside the catalogue.
    Returns the manifest with `sha256`, `size_bytes` and `duration_seconds`."""
    fmt = backup_format_resolve(requested_format)
    path = Path(path)
    started = time.monotonic()
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as out:
            manifest = _write_archive(fmt, out)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    sha256 = formats.file_sha256(path)
    Path(f"{path}.sha256").write_text(f"{sha256}  {path.name}\n")
    return {
        **manifest,
        "sha256": sha256,
        "size_bytes": path.stat().st_size,
        "duration_seconds": round(time.monotonic() - started, 3),
    }


def backup_open(*, backup: Backup):
    """The archive of a successful backup, opened for reading from its storage."""
    if backup.status != BackupStatus.SUCCEEDED or not backup.file_name:
        raise NotFound(f"Backup {backup.pk} has no archive (status {backup.status}).")
    try:
        return backup_storage(backup.storage).open(backup.file_name, "rb")
    except FileNotFoundError as exc:
        raise NotFound(f"The archive {backup.file_name} is no longer in the backup storage.") from exc


def _delete_files(backup: Backup) -> None:
    if not backup.file_name:
        return
    try:
        storage = backup_storage(backup.storage)
    except Exception:  # the storage alias is gone from the settings: only the row goes
        logger.warning("Backup %s: storage %r is not configured; row removed only", backup.pk, backup.storage)
        return
    for name in (backup.file_name, f"{backup.file_name}.sha256"):
        storage.delete(name)  # a missing file is not an error for Django storages


def _stale(backup: Backup) -> bool:
    """Pending or running for longer than a job may run: no worker will finish it."""
    since = backup.started_at or backup.created_at
    limit = timedelta(seconds=settings.BACKUP_TIME_LIMIT_SECONDS + 120)
    return since is not None and timezone.now() - since > limit


def backup_delete(*, backup: Backup) -> None:
    """Remove a backup's archive from the storage and its row. A running one is a 409 until
    its time limit has passed (its worker is gone)."""
    if backup.status in (BackupStatus.PENDING, BackupStatus.RUNNING) and not _stale(backup):
        raise ConflictError(f"The backup is {backup.status}; delete it once it has finished.")
    before = snapshot(backup)
    with transaction.atomic():
        backup.delete()
        audited("delete", backup, before=before)
    _delete_files(backup)


def backup_prune(*, keep: int | None = None) -> list[str]:
    """Keep the newest `keep` (BACKUP_RETENTION_COUNT) successful backups; delete the older
    ones (archive and row). 0 keeps all. Returns the ids removed."""
    keep = settings.BACKUP_RETENTION_COUNT if keep is None else keep
    if keep <= 0:
        return []
    old = list(Backup.objects.filter(status=BackupStatus.SUCCEEDED).order_by("-created_at", "-pk")[keep:])
    for backup in old:
        backup_delete(backup=backup)
    return [str(backup.pk) for backup in old]


def backup_restore(
    *, path: str | Path, force: bool = False, expected_sha256: str | None = None, using: str = "default"
) -> dict:
    """Restore an archive into the database `using`, replacing its data.

    Refuses (formats.BackupError, nothing changed) a file whose checksum does not match (the
    whole file against `expected_sha256` or a `<path>.sha256` beside it; every member against
    the manifest), a backup from another migration state, and a database holding data unless
    `force`. Portable archives load in one transaction; pg_dump archives go through
    `pg_restore --single-transaction`."""
    path = Path(path)
    if not path.is_file():
        raise formats.BackupError(f"No such file: {path}")
    sidecar = Path(f"{path}.sha256")
    whole_file = "none"
    if expected_sha256 is None and sidecar.is_file():
        expected_sha256 = sidecar.read_text().split()[0] if sidecar.read_text().split() else ""
        whole_file = "sidecar"
    elif expected_sha256 is not None:
        whole_file = "given"
    if expected_sha256 is not None:
        actual = formats.file_sha256(path)
        if actual != expected_sha256.strip().lower():
            raise formats.BackupError(
                f"Checksum mismatch: {path.name} has SHA-256 {actual}, expected {expected_sha256.strip()}."
            )
    archive, manifest = formats.open_archive(path)
    with archive:
        formats.verify_members(archive, manifest)
        here = formats.applied_migrations(using)
        if manifest["format"] == BackupFormat.PORTABLE and not here:
            raise formats.BackupError(
                "This database has no tables: run `manage.py migrate` first, then restore."
            )
        if not here:  # pg_dump into a blank database: it brings the schema; it must be this code's
            here = formats.code_migrations()
        differences = formats.schema_differences(manifest["migrations"], here)
        if differences:
            raise formats.BackupError(
                "Schema mismatch: the backup was made at another migration state than this "
                "database's. Restore it with the code version that made it (then upgrade), or "
                "migrate this database to the backup's state. Differences:\n  " + "\n  ".join(differences)
            )
        occupied = formats.non_empty_tables(using)
        if occupied and not force:
            raise formats.BackupError(
                f"The database is not empty ({len(occupied)} tables hold rows, e.g. "
                f"{', '.join(occupied[:5])}). Restore into an empty database, or pass --force to "
                "replace its data."
            )
        started = time.monotonic()
        if manifest["format"] == BackupFormat.PORTABLE:
            counts = formats.restore_portable(archive, manifest, using=using)
        else:
            formats.restore_pg_dump(archive, manifest, using=using)
            counts = {}
    ContentType.objects.clear_cache()
    result = {
        "format": manifest["format"],
        "source_vendor": manifest.get("database_vendor"),
        "created_at": manifest.get("created_at"),
        "schema_version": manifest.get("schema_version"),
        "tables": counts,
        "rows": sum(counts.values()),
        "replaced_data": bool(occupied),
        "whole_file_checksum": whole_file,
        "duration_seconds": round(time.monotonic() - started, 3),
    }
    audited(
        "restore",
        Backup,
        details={
            "file": path.name,
            "format": manifest["format"],
            "source_vendor": manifest.get("database_vendor"),
            "backup_created_at": manifest.get("created_at"),
            "rows": result["rows"],
            "forced": bool(occupied),
        },
    )
    return result
