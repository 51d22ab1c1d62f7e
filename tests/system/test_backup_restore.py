"""Backup → restore into an EMPTY, separate database → the same rows, per table, and the secret
still decrypts: on SQLite, on PostgreSQL, and across the two (portable format).

The source is this test database (SQLite by default, PostgreSQL in CI). Each target is a real
separate database — a temp SQLite file, or a fresh PostgreSQL database created and dropped here
— migrated and restored by `manage.py` in a subprocess, and read back by another one.
The PostgreSQL cases run when the suite runs on PostgreSQL (CI), like the other PG-only tests.
"""

import shutil
import uuid
import zipfile

import pytest
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from system.models import BackupStatus
from system.services.backups import backup_run, backup_start, backup_storage

from .backup_support import (
    assert_same_rows,
    database_state,
    manage,
    postgres_admin,
    postgres_url,
    seed,
    state_of,
    subprocess_env,
)

pytestmark = pytest.mark.django_db(transaction=True)
on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL as the suite's database: CI runs it"
)


@pytest.fixture(scope="module")
def migrated_sqlite(tmp_path_factory):
    """A migrated, empty SQLite database file (migrated once; each test restores into a copy)."""
    root = tmp_path_factory.mktemp("backup-sqlite")
    path = root / "migrated.sqlite3"
    manage(subprocess_env(f"sqlite:///{path}", root / "var"), "migrate", "--noinput", "-v0")
    return path


def fresh_sqlite(migrated_sqlite, tmp_path, name: str):
    path = tmp_path / f"{name}.sqlite3"
    shutil.copyfile(migrated_sqlite, path)
    return subprocess_env(f"sqlite:///{path}", tmp_path / f"var-{name}")


@pytest.fixture
def postgres_databases(tmp_path):
    """make(migrated: bool) -> env of a fresh PostgreSQL database (dropped after the test)."""
    settings_dict = connection.settings_dict
    created: list[str] = []
    template: list[str] = []  # a migrated, empty database the migrated ones are copies of

    def create(template_name: str | None = None) -> str:
        name = f"{settings_dict['NAME']}_restore_{uuid.uuid4().hex[:8]}"
        copy = f' TEMPLATE "{template_name}"' if template_name else ""
        postgres_admin(settings_dict, f'CREATE DATABASE "{name}"{copy}')
        created.append(name)
        return name

    def env_for(name: str) -> dict:
        return subprocess_env(postgres_url(settings_dict, name), tmp_path / f"var-{name}")

    def make(*, migrated: bool) -> dict:
        if not migrated:
            return env_for(create())
        if not template:
            template.append(create())
            manage(env_for(template[0]), "migrate", "--noinput", "-v0")
        return env_for(create(template[0]))

    yield make
    for name in created:
        postgres_admin(settings_dict, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def take_backup(fmt: str):
    """A backup through the service, and the database's state as the snapshot sees it."""
    backup = backup_start(requested_format=fmt, note="test", enqueue=False)
    # The job's own writes (its status) go to the backup catalogue, which no backup holds.
    state = database_state()
    backup = backup_run(backup_id=backup.pk)
    assert backup.status == BackupStatus.SUCCEEDED, backup.error
    assert backup.format == fmt
    return backup, backup_storage().path(backup.file_name), state


def archive_text(path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return b"".join(archive.read(name) for name in archive.namelist())


def test_portable_backup_restores_into_an_empty_sqlite_database_with_the_same_rows(migrated_sqlite, tmp_path):
    data = seed()
    backup, path, source = take_backup("portable")
    non_empty = [table for table, rows in source["tables"].items() if rows]
    assert len(non_empty) >= 20 and sum(map(len, source["tables"].values())) >= 300
    assert backup.table_rows["masterdata_secret"] == 1
    applied = MigrationRecorder(connection).applied_migrations()
    assert backup.schema_version["system"] == max(name for app, name in applied if app == "system")
    # Secrets stay ciphertext in the archive; the plaintext is nowhere in it.
    content = archive_text(path)
    assert data["plaintext"].encode() not in content
    assert data["secret"].encrypted_value.encode() in content

    target = fresh_sqlite(migrated_sqlite, tmp_path, "target")
    out = manage(target, "restore", str(path)).stdout
    assert "whole file matches its .sha256" in out
    restored = state_of(target, then_insert=True)
    assert_same_rows(source, restored)
    assert restored["secrets"]["backup-secret"] == data["plaintext"]
    # new rows get ids after the restored ones
    assert restored["inserted"]["user"] > max(map(int, source["tables"]["accounts_user"]))


@on_postgresql
def test_postgresql_backups_restore_into_postgresql_and_across_to_sqlite_and_back(
    migrated_sqlite, tmp_path, postgres_databases
):
    data = seed()
    # portable: PostgreSQL -> PostgreSQL (migrated, empty)
    _, portable_path, source = take_backup("portable")
    target = postgres_databases(migrated=True)
    manage(target, "restore", str(portable_path))
    restored = state_of(target, then_insert=True)
    assert_same_rows(source, restored)
    # the sequences were reset: new rows get ids after the restored ones
    assert restored["inserted"]["user"] > max(map(int, source["tables"]["accounts_user"]))
    assert restored["inserted"]["group"] > max(map(int, source["tables"]["auth_group"]))

    # pg_dump custom format: PostgreSQL -> a blank PostgreSQL database (pg_restore brings the schema)
    _, dump_path, dump_source = take_backup("pg_dump")
    with zipfile.ZipFile(dump_path) as archive:
        assert archive.read("database.pgdump")[:5] == b"PGDMP"
    blank = postgres_databases(migrated=False)
    manage(blank, "restore", str(dump_path))
    restored = state_of(blank)
    assert_same_rows(dump_source, restored)
    assert restored["secrets"]["backup-secret"] == data["plaintext"]

    # PostgreSQL -> SQLite (portable), then that SQLite database's own backup -> PostgreSQL.
    sqlite_target = fresh_sqlite(migrated_sqlite, tmp_path, "from-pg")
    manage(sqlite_target, "restore", str(portable_path))
    assert_same_rows(source, state_of(sqlite_target))
    made_on_sqlite = tmp_path / "made-on-sqlite.zip"
    manage(sqlite_target, "backup", "--format", "portable", "--output", str(made_on_sqlite))
    again = postgres_databases(migrated=True)
    manage(again, "restore", str(made_on_sqlite))
    # The SQLite database held the restore's audit event; its restore into PostgreSQL adds one more.
    assert_same_rows(source, state_of(again), restore_events=2)
