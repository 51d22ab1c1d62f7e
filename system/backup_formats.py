"""The backup archive and its two formats.

An archive is a zip file holding `manifest.json` (format, schema version, database vendor, and
the SHA-256 of every other member) and the data:

- **portable**: one JSON-lines member per table (`data/NNNN-<app>.<model>.jsonl`, deflated), in
  foreign-key dependency order. The first line names the model, table and columns; every other
  line is one row, a JSON array of its column values (datetimes ISO 8601, decimals and UUIDs as
  strings, bytes base64). Rows are read inside one read-only transaction (REPEATABLE READ on
  PostgreSQL, one read transaction on SQLite), streamed row by row, ordered by primary key. It
  restores into SQLite or PostgreSQL, whichever the backup came from.
- **pg_dump**: `database.pgdump`, the output of `pg_dump --format=custom` (stored as is; it is
  already compressed). It restores into PostgreSQL with `pg_restore`.

Stored values are copied as they are in the database: secrets stay Fernet ciphertext, so a
restore needs the same FERNET_KEYS (README "Backups and restore").

Left out of every backup: the backup catalogue (`system.Backup`, it describes the storage, not
the data) and `django_migrations` (its content is the manifest's schema version).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from django.apps import apps
from django.core.management.color import no_style
from django.db import connections, models, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.utils.duration import duration_iso_string

ARCHIVE_KIND = "agentmesh-backup"
ARCHIVE_VERSION = 1
MANIFEST = "manifest.json"
PG_MEMBER = "database.pgdump"
CHUNK = 1 << 20
BATCH = 1000
# Tables `migrate` itself fills (content types, permissions, the role groups): a database with
# rows only there is still empty.
MIGRATE_SEEDED = {"contenttypes.contenttype", "auth.permission", "auth.group", "auth.group_permissions"}


class BackupError(Exception):
    """A backup or restore that cannot be done, with a message for the operator."""


# --- What is backed up ------------------------------------------------------------------------
def excluded_models() -> set[str]:
    return {"system.backup"}


def backed_up_models() -> list[type[models.Model]]:
    """Every table of an installed model (auto-created many-to-many tables too), parents first."""
    candidates = [
        model
        for model in apps.get_models(include_auto_created=True)
        if model._meta.managed
        and not model._meta.proxy
        and not model._meta.swapped
        and model._meta.label_lower not in excluded_models()
    ]
    return _dependency_order(candidates)


def _dependency_order(candidates: list[type[models.Model]]) -> list[type[models.Model]]:
    by_label = {m._meta.label_lower: m for m in candidates}
    needs: dict[str, set[str]] = {}
    for label, model in by_label.items():
        targets = set()
        for field in model._meta.local_concrete_fields:
            if field.remote_field is not None:
                target = field.remote_field.model._meta.concrete_model._meta.label_lower
                if target != label and target in by_label:
                    targets.add(target)
        needs[label] = targets
    ordered: list[str] = []
    done: set[str] = set()
    remaining = sorted(by_label)
    while remaining:
        ready = [label for label in remaining if needs[label] <= done]
        if not ready:  # a cycle (nullable back-references): constraints are deferred anyway
            ready = [min(remaining, key=lambda label: len(needs[label] - done))]
        for label in ready:
            ordered.append(label)
            done.add(label)
        remaining = [label for label in remaining if label not in done]
    return [by_label[label] for label in ordered]


# --- Schema version ---------------------------------------------------------------------------
def applied_migrations(using: str = "default") -> dict[str, list[str]]:
    """{app_label: sorted names of the applied migrations} of a database ({} if unmigrated)."""
    recorder = MigrationRecorder(connections[using])
    if not recorder.has_table():
        return {}
    state: dict[str, list[str]] = {}
    for app_label, name in recorder.applied_migrations():
        state.setdefault(app_label, []).append(name)
    return {app: sorted(names) for app, names in sorted(state.items())}


def code_migrations() -> dict[str, list[str]]:
    """{app_label: sorted names} of every migration this code has."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    state: dict[str, list[str]] = {}
    for app_label, name in loader.graph.nodes:
        state.setdefault(app_label, []).append(name)
    return {app: sorted(names) for app, names in sorted(state.items())}


def latest_versions(state: dict[str, list[str]]) -> dict[str, str]:
    return {app: names[-1] for app, names in state.items() if names}


def schema_differences(backup: dict[str, list[str]], here: dict[str, list[str]]) -> list[str]:
    """Human-readable differences between two migration states (empty: the same)."""
    out = []
    for app in sorted(set(backup) | set(here)):
        ours, theirs = set(here.get(app, [])), set(backup.get(app, []))
        if ours == theirs:
            continue
        only_backup, only_here = sorted(theirs - ours), sorted(ours - theirs)
        parts = []
        if only_backup:
            parts.append(f"the backup has {', '.join(only_backup)} which this database has not applied")
        if only_here:
            parts.append(f"this database has {', '.join(only_here)} which the backup has not")
        out.append(f"{app}: {'; '.join(parts)}")
    return out


# --- Values -----------------------------------------------------------------------------------
def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.timedelta):
        return duration_iso_string(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"Cannot back up a value of type {type(value).__name__}.")


def _decoder(field: models.Field):
    if isinstance(field, models.JSONField):
        return lambda value: value
    return lambda value: None if value is None else field.to_python(value)


# --- Consistent reads ---------------------------------------------------------------------------
@contextmanager
def read_snapshot(using: str = "default") -> Iterator[None]:
    """Every read inside sees one consistent state of the database.

    PostgreSQL: a REPEATABLE READ, READ ONLY transaction (never blocks writers). SQLite: one
    deferred read transaction (WAL: writers go on; the reads see the state at the first read).
    Inside a caller's transaction the reads already share one snapshot."""
    connection = connections[using]
    if connection.in_atomic_block:
        yield
        return
    if connection.vendor == "postgresql":
        with transaction.atomic(using=using):
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield
        return
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("ROLLBACK")
        return
    with transaction.atomic(using=using):
        yield


# --- Writing ------------------------------------------------------------------------------------
def _manifest(*, fmt: str, using: str, migrations: dict[str, list[str]], **extra) -> dict:
    return {
        "kind": ARCHIVE_KIND,
        "archive_version": ARCHIVE_VERSION,
        "format": fmt,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "database_vendor": connections[using].vendor,
        "migrations": migrations,
        "schema_version": latest_versions(migrations),
        **extra,
    }


def write_portable(target: IO[bytes], *, using: str = "default") -> dict:
    """Write a portable archive of the database to `target`; return its manifest."""
    tables = []
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        with read_snapshot(using):
            migrations = applied_migrations(using)
            for index, model in enumerate(backed_up_models(), start=1):
                tables.append(_write_table(archive, model, index, using))
        manifest = _manifest(fmt="portable", using=using, migrations=migrations, tables=tables)
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def _write_table(archive: zipfile.ZipFile, model: type[models.Model], index: int, using: str) -> dict:
    meta = model._meta
    fields = list(meta.local_concrete_fields)
    member = f"data/{index:04d}-{meta.label_lower}.jsonl"
    digest, rows = hashlib.sha256(), 0
    header = {"model": meta.label_lower, "table": meta.db_table, "columns": [f.attname for f in fields]}
    rows_query = model._base_manager.using(using).order_by("pk").values_list(*[f.attname for f in fields])
    with archive.open(_member_info(member, zipfile.ZIP_DEFLATED), "w", force_zip64=True) as out:
        line = (json.dumps(header, separators=(",", ":")) + "\n").encode()
        digest.update(line)
        out.write(line)
        for row in rows_query.iterator(chunk_size=2000):
            line = (json.dumps(row, default=_encode, separators=(",", ":")) + "\n").encode()
            digest.update(line)
            out.write(line)
            rows += 1
    return {**header, "member": member, "rows": rows, "sha256": digest.hexdigest()}


def _member_info(name: str, compression: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=dt.datetime.now().timetuple()[:6])
    info.compress_type = compression
    info.external_attr = 0o600 << 16
    return info


def pg_dump_status(using: str = "default") -> tuple[bool, str]:
    """(usable, why not): pg_dump is installed and not older than the PostgreSQL server."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False, "the database is not PostgreSQL"
    binary = shutil.which("pg_dump")
    if not binary:
        return False, "pg_dump is not installed"
    client = _tool_major(binary)
    connection.ensure_connection()
    server = connection.pg_version // 10000
    if client is None or client < server:
        return False, f"pg_dump {client} cannot dump PostgreSQL {server} (install pg_dump >= {server})"
    return True, ""


def _tool_version(binary: str) -> str:
    out = subprocess.run(  # noqa: S603 (a fixed argument list, no shell)
        [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    match = re.search(r"(\d+(?:\.\d+)*)", out)
    return match.group(1) if match else ""


def _tool_major(binary: str) -> int | None:
    version = _tool_version(binary)
    return int(version.split(".")[0]) if version else None


def _pg_env(using: str) -> dict[str, str]:
    """libpq's environment for pg_dump/pg_restore: the password never on a command line."""
    settings_dict = connections[using].settings_dict
    options = settings_dict.get("OPTIONS") or {}
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    pairs = {
        "PGHOST": settings_dict.get("HOST"),
        "PGPORT": settings_dict.get("PORT"),
        "PGUSER": settings_dict.get("USER"),
        "PGPASSWORD": settings_dict.get("PASSWORD"),
        "PGDATABASE": settings_dict.get("NAME"),
        "PGSSLMODE": options.get("sslmode"),
        "PGCONNECT_TIMEOUT": options.get("connect_timeout"),
    }
    env.update({key: str(value) for key, value in pairs.items() if value not in (None, "")})
    return env


def write_pg_dump(target: IO[bytes], *, using: str = "default") -> dict:
    """Write a pg_dump (custom format) archive of the database to `target`; return its manifest."""
    usable, why = pg_dump_status(using)
    if not usable:
        raise BackupError(f"pg_dump cannot be used: {why}.")
    binary = shutil.which("pg_dump")
    migrations = applied_migrations(using)
    excluded = [f"--exclude-table-data={m._meta.db_table}" for m in _excluded_model_classes()]
    command = [binary, "--format=custom", "--no-owner", "--no-privileges", *excluded]
    digest, size = hashlib.sha256(), 0
    with (
        zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive,
        tempfile.TemporaryFile() as errors,
    ):
        process = subprocess.Popen(  # noqa: S603 (a fixed argument list, no shell)
            command, stdout=subprocess.PIPE, stderr=errors, env=_pg_env(using)
        )
        streamed = False
        try:
            with archive.open(_member_info(PG_MEMBER, zipfile.ZIP_STORED), "w", force_zip64=True) as out:
                while chunk := process.stdout.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            streamed = True
        finally:
            process.stdout.close()
            if not streamed:  # a time limit or a full disk: pg_dump must not outlive the job
                process.kill()
                process.wait()
        if process.wait() != 0:
            errors.seek(0)
            message = errors.read(4000).decode(errors="replace").strip()
            raise BackupError(f"pg_dump failed (exit {process.returncode}): {message}")
        manifest = _manifest(
            fmt="pg_dump",
            using=using,
            migrations=migrations,
            pg_dump={
                "member": PG_MEMBER,
                "sha256": digest.hexdigest(),
                "size": size,
                "pg_dump_version": _tool_version(binary),
                "server_version": connections[using].pg_version,
            },
        )
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def _excluded_model_classes() -> list[type[models.Model]]:
    return [apps.get_model(label) for label in sorted(excluded_models())]


# --- Reading ------------------------------------------------------------------------------------
def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(archive: zipfile.ZipFile) -> dict:
    try:
        manifest = json.loads(archive.read(MANIFEST))
    except KeyError as exc:
        raise BackupError("Not an Agent Mesh backup: the archive has no manifest.json.") from exc
    except ValueError as exc:
        raise BackupError("The backup's manifest.json is not valid JSON.") from exc
    if not isinstance(manifest, dict) or manifest.get("kind") != ARCHIVE_KIND:
        raise BackupError("Not an Agent Mesh backup (manifest kind).")
    if manifest.get("archive_version") != ARCHIVE_VERSION:
        raise BackupError(
            f"Archive version {manifest.get('archive_version')} is not supported (this code reads {ARCHIVE_VERSION})."
        )
    if manifest.get("format") not in ("portable", "pg_dump"):
        raise BackupError(f"Unknown backup format {manifest.get('format')!r}.")
    return manifest


def open_archive(path: str | Path) -> tuple[zipfile.ZipFile, dict]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BackupError(f"{path} is not a readable backup archive: {exc}") from exc
    try:
        return archive, read_manifest(archive)
    except BackupError:
        archive.close()
        raise


def verify_members(archive: zipfile.ZipFile, manifest: dict) -> None:
    """Every data member's SHA-256 matches the manifest (read once, streamed)."""
    if manifest["format"] == "portable":
        expected = {table["member"]: table["sha256"] for table in manifest.get("tables", [])}
    else:
        expected = {manifest["pg_dump"]["member"]: manifest["pg_dump"]["sha256"]}
    for member, sha in expected.items():
        digest = hashlib.sha256()
        try:
            with archive.open(member) as source:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
        except KeyError as exc:
            raise BackupError(f"Checksum check failed: the archive has no {member}.") from exc
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise BackupError(f"Checksum check failed: {member} is corrupt ({exc}).") from exc
        if digest.hexdigest() != sha:
            raise BackupError(f"Checksum mismatch in {member}: the archive is corrupt or was altered.")


# --- Restoring ------------------------------------------------------------------------------------
def non_empty_tables(using: str = "default") -> list[str]:
    """Tables holding data (the ones `migrate` fills aside); [] for an empty database."""
    existing = set(connections[using].introspection.table_names())
    return [
        model._meta.db_table
        for model in backed_up_models()
        if model._meta.label_lower not in MIGRATE_SEEDED
        and model._meta.db_table in existing
        and model._base_manager.using(using).exists()
    ]


def restore_portable(archive: zipfile.ZipFile, manifest: dict, *, using: str = "default") -> dict[str, int]:
    """Replace every backed-up table's rows by the archive's, in one transaction; {table: rows}."""
    connection = connections[using]
    here = {m._meta.label_lower: m for m in backed_up_models()}
    in_archive = {table["model"] for table in manifest["tables"]}
    missing = sorted(set(here) - in_archive)
    unknown = sorted(in_archive - set(here))
    if unknown:
        raise BackupError(f"The backup holds tables this code does not have: {', '.join(unknown)}.")
    counts: dict[str, int] = {}
    with transaction.atomic(using=using):
        tables = [m._meta.db_table for m in here.values()]
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # Checks still pending from earlier in an enclosing transaction run now (TRUNCATE
                # refuses a table with pending trigger events); the inserts' wait for the commit.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for statement in connection.ops.sql_flush(no_style(), tables):
                cursor.execute(statement)
            if connection.vendor == "postgresql":
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
            for table in manifest["tables"]:
                model = here[table["model"]]
                counts[model._meta.db_table] = _load_table(cursor, archive, table, model, connection)
            for statement in connection.ops.sequence_reset_sql(no_style(), list(here.values())):
                cursor.execute(statement)
    if missing:  # tables the backup predates are left empty (the schema check allows none)
        counts.update({here[label]._meta.db_table: 0 for label in missing})
    return counts


def _load_table(cursor, archive: zipfile.ZipFile, table: dict, model, connection) -> int:
    by_attname = {f.attname: f for f in model._meta.local_concrete_fields}
    columns = table["columns"]
    absent = [name for name in columns if name not in by_attname]
    if absent:
        raise BackupError(
            f"{table['model']}: the backup has columns this code does not: {', '.join(absent)}."
        )
    fields = [by_attname[name] for name in columns]
    decoders = [_decoder(f) for f in fields]
    quote = connection.ops.quote_name
    # Names come from the model (quoted), never from the archive; values are parameters.
    sql = "INSERT INTO {} ({}) VALUES ({})".format(  # noqa: S608
        quote(model._meta.db_table),
        ", ".join(quote(f.column) for f in fields),
        ", ".join(["%s"] * len(fields)),
    )
    rows, batch = 0, []
    with archive.open(table["member"]) as source:
        source.readline()  # the header (checked with the member's checksum)
        for line in source:
            values = json.loads(line)
            batch.append(
                [
                    field.get_db_prep_save(decode(value), connection)
                    for field, decode, value in zip(fields, decoders, values, strict=True)
                ]
            )
            if len(batch) >= BATCH:
                cursor.executemany(sql, batch)
                rows += len(batch)
                batch = []
    if batch:
        cursor.executemany(sql, batch)
        rows += len(batch)
    if rows != table["rows"]:
        raise BackupError(f"{table['model']}: {rows} rows read, the manifest says {table['rows']}.")
    return rows


def restore_pg_dump(archive: zipfile.ZipFile, manifest: dict, *, using: str = "default") -> None:
    """pg_restore the archive's dump over the database in one transaction (--clean), keeping the
    backup catalogue of this database."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        raise BackupError(
            "A pg_dump backup restores into PostgreSQL only (use a portable backup for SQLite)."
        )
    binary = shutil.which("pg_restore")
    if not binary:
        raise BackupError("pg_restore is not installed (PostgreSQL client tools).")
    made_by = str(manifest["pg_dump"].get("pg_dump_version") or "0").split(".")[0]
    client = _tool_major(binary) or 0
    if made_by.isdigit() and client < int(made_by):
        raise BackupError(f"pg_restore {client} cannot read a dump made by pg_dump {made_by}.")
    from .models import Backup

    existing = set(connection.introspection.table_names())
    catalogue = list(Backup.objects.using(using).all()) if Backup._meta.db_table in existing else []
    with tempfile.TemporaryDirectory() as workdir:
        dump = Path(workdir) / PG_MEMBER
        with archive.open(manifest["pg_dump"]["member"]) as source, open(dump, "wb") as out:
            shutil.copyfileobj(source, out, CHUNK)
        connection.close()
        result = subprocess.run(  # noqa: S603 (a fixed argument list, no shell)
            [
                binary,
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
                f"--dbname={connection.settings_dict['NAME']}",
                str(dump),
            ],
            capture_output=True,
            env=_pg_env(using),
            check=False,
        )
    if result.returncode != 0:
        raise BackupError(
            f"pg_restore failed (exit {result.returncode}), nothing was changed: "
            f"{result.stderr.decode(errors='replace').strip()[:4000]}"
        )
    if catalogue:
        Backup.objects.using(using).bulk_create(catalogue, ignore_conflicts=True)
