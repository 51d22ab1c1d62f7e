"""`manage.py backup` and `manage.py restore`: what restore refuses (checksum, schema version,
a database holding data) before it changes anything, and --force replacing the data."""

import hashlib
import json
import zipfile
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from masterdata.models import Secret, Skill
from system.models import Backup
from tests.masterdata.factories import SECRET_VALUE, make_secret, make_skill

from .backup_support import database_state


@pytest.fixture(autouse=True)
def _backup_dir(tmp_path, settings):
    settings.BACKUP_DIR = tmp_path / "backups"


@pytest.fixture
def archive(tmp_path, developer):
    make_secret(developer)
    make_skill(developer)
    path = tmp_path / "backup.zip"
    out = StringIO()
    call_command("backup", "--format", "portable", "--output", str(path), stdout=out)
    assert f"Backup written: {path}" in out.getvalue()
    assert "format:   portable" in out.getvalue()
    return path


def rewrite(source, target, *, change_member=None, change_manifest=None):
    """Copy an archive, altering one data member's bytes or the manifest (no .sha256 beside it)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            data = old.read(info.filename)
            if change_member and change_member in info.filename:
                data = data.replace(b"Summarize text", b"Summarize TEXT")
            if change_manifest and info.filename == "manifest.json":
                manifest = json.loads(data)
                change_manifest(manifest)
                data = json.dumps(manifest).encode()
            new.writestr(info, data)
    return target


def restore(*args):
    out = StringIO()
    call_command("restore", *map(str, args), stdout=out)
    return out.getvalue()


def test_backup_command_into_the_storage_prints_a_summary_and_keeps_a_record(developer):
    out = StringIO()
    call_command("backup", "--format", "portable", "--note", "nightly", stdout=out)
    backup = Backup.objects.get()
    assert backup.status == "succeeded" and backup.note == "nightly"
    text = out.getvalue()
    assert backup.file_name in text and backup.sha256 in text and str(backup.pk) in text


def test_the_backup_holds_the_secret_as_ciphertext_only(archive):
    with zipfile.ZipFile(archive) as zipped:
        content = b"".join(zipped.read(name) for name in zipped.namelist())
    assert SECRET_VALUE.encode() not in content
    assert Secret.objects.get().encrypted_value.encode() in content
    sidecar = (archive.parent / "backup.zip.sha256").read_text()
    assert sidecar == f"{hashlib.sha256(archive.read_bytes()).hexdigest()}  backup.zip\n"


def test_restore_refuses_a_database_holding_data_and_force_replaces_it(archive):
    before = database_state()
    make_skill(Secret.objects.get().owner, name="made after the backup")
    with pytest.raises(CommandError, match=r"not empty.*--force"):
        restore(archive)
    assert Skill.objects.filter(name="made after the backup").exists()  # nothing changed

    out = restore(archive, "--force")
    assert "previous data was replaced" in out
    assert not Skill.objects.filter(name="made after the backup").exists()
    after = database_state()
    for table, rows in before["tables"].items():
        if table not in ("observability_observabilityevent", "observability_metricseries"):
            assert after["tables"][table] == rows, table
    assert after["secrets"] == {"openai-key": SECRET_VALUE}


def test_restore_refuses_a_file_whose_checksum_does_not_match(archive, tmp_path):
    tampered = tmp_path / "tampered.zip"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    (tmp_path / "tampered.zip.sha256").write_text((archive.parent / "backup.zip.sha256").read_text())
    with pytest.raises(CommandError, match=r"Checksum mismatch: tampered\.zip has SHA-256"):
        restore(tampered, "--force")
    with pytest.raises(CommandError, match="Checksum mismatch"):
        restore(archive, "--force", "--sha256", "0" * 64)


def test_restore_refuses_an_altered_member_even_without_a_sidecar(archive, tmp_path):
    altered = rewrite(archive, tmp_path / "altered.zip", change_member="masterdata.skill")
    with pytest.raises(CommandError, match=r"Checksum mismatch in data/\d+-masterdata\.skill\.jsonl"):
        restore(altered, "--force")
    assert Skill.objects.get().name == "Summarize text"


def test_restore_refuses_a_backup_from_another_schema_version(archive, tmp_path):
    def newer(manifest):
        manifest["migrations"]["system"].append("9999_from_the_future")

    def older(manifest):
        manifest["migrations"]["system"].pop()

    with pytest.raises(
        CommandError, match=r"Schema mismatch(.|\n)*system: the backup has 9999_from_the_future"
    ):
        restore(rewrite(archive, tmp_path / "newer.zip", change_manifest=newer), "--force")
    with pytest.raises(CommandError, match=r"Schema mismatch(.|\n)*system: this database has 0"):
        restore(rewrite(archive, tmp_path / "older.zip", change_manifest=older), "--force")


def test_restore_refuses_what_is_not_a_backup(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(CommandError, match="not a readable backup archive"):
        restore(junk)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zipped:
        zipped.writestr("hello.txt", "hi")
    with pytest.raises(CommandError, match=r"no manifest\.json"):
        restore(other)
    with pytest.raises(CommandError, match="No such file"):
        restore(tmp_path / "missing.zip")


@pytest.mark.skipif(connection.vendor == "postgresql", reason="pg_dump is usable on PostgreSQL")
def test_backup_command_says_why_pg_dump_cannot_be_used(db):
    with pytest.raises(
        CommandError, match=r"--format: pg_dump cannot be used here: the database is not PostgreSQL"
    ):
        call_command("backup", "--format", "pg_dump", stdout=StringIO())
    assert not Backup.objects.exists()


@pytest.mark.skipif(connection.vendor == "postgresql", reason="a pg_dump archive restores on PostgreSQL")
def test_a_pg_dump_archive_does_not_restore_into_sqlite(archive, tmp_path):
    def as_pg_dump(manifest):
        manifest.update(
            format="pg_dump",
            tables=[],
            pg_dump={
                "member": "database.pgdump",
                "sha256": hashlib.sha256(b"PGDMP").hexdigest(),
                "size": 5,
                "pg_dump_version": "15.2",
            },
        )

    dumped = rewrite(archive, tmp_path / "dumped.zip", change_manifest=as_pg_dump)
    with zipfile.ZipFile(dumped, "a") as zipped:
        zipped.writestr("database.pgdump", b"PGDMP")
    with pytest.raises(CommandError, match="restores into PostgreSQL only"):
        restore(dumped, "--force")
