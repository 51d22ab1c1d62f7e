"""POST /system/backup (202, a job run eagerly here) and the backup catalogue: list, detail,
download, delete; admin only; strict input; retention; the admin pages."""

import hashlib
import io
import json
import zipfile
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from observability.models import ObservabilityEvent
from system.models import Backup, BackupStatus
from system.services.backups import backup_storage
from tests.api_base import assert_problem

CREATE = "/api/v1/system/backup"
LIST = "/api/v1/system/backups"


@pytest.fixture(autouse=True)
def _backup_dir(tmp_path, settings):
    settings.BACKUP_DIR = tmp_path / "backups"


def detail(backup_id) -> str:
    return f"{LIST}/{backup_id}"


def start(client, capture, body=None):
    with capture(execute=True):
        response = client.post(CREATE, body if body is not None else {"format": "portable"}, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def test_backup_job_list_detail_download_delete(admin_user, client_for, django_capture_on_commit_callbacks):
    client = client_for(admin_user)
    accepted = start(
        client, django_capture_on_commit_callbacks, {"format": "portable", "note": "before upgrade"}
    )
    assert accepted["status"] == "pending" and accepted["format"] == "portable"
    assert accepted["requested_by"] == admin_user.username

    body = client.get(detail(accepted["id"])).json()
    assert body["status"] == "succeeded", body["error"]
    assert body["note"] == "before upgrade"
    assert body["size_bytes"] > 0 and len(body["sha256"]) == 64
    assert body["duration_seconds"] >= 0
    assert body["database_vendor"] == connection.vendor
    assert body["schema_version"]["system"].startswith("00")
    assert body["table_rows"]["accounts_user"] >= 1
    assert body["download_url"].endswith(f"/api/v1/system/backups/{body['id']}/download")

    listed = client.get(LIST).json()
    assert [item["id"] for item in listed["results"]] == [body["id"]]
    assert client.get(LIST, {"status": "failed"}).json()["results"] == []

    download = client.get(body["download_url"])
    assert download.status_code == 200
    assert download["Content-Type"] == "application/zip"
    assert download["Content-Disposition"] == f'attachment; filename="{body["file_name"]}"'
    content = b"".join(download.streaming_content)
    assert len(content) == body["size_bytes"]
    assert hashlib.sha256(content).hexdigest() == body["sha256"]
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["format"] == "portable"
    assert manifest["schema_version"] == body["schema_version"]

    storage = backup_storage()
    assert storage.exists(body["file_name"]) and storage.exists(f"{body['file_name']}.sha256")
    assert client.delete(detail(body["id"])).status_code == 204
    assert not storage.exists(body["file_name"]) and not storage.exists(f"{body['file_name']}.sha256")
    assert not Backup.objects.filter(pk=body["id"]).exists()
    assert_problem(client.get(detail(body["id"])), 404)
    audit = ObservabilityEvent.objects.filter(resource_id=body["id"]).values_list("type", flat=True)
    assert {"audit.create", "audit.update", "audit.delete"} <= set(audit)


@pytest.mark.parametrize("role", ["developer", "plain_user"])
def test_backups_are_admin_only(request, role, client_for, admin_user):
    backup = Backup.objects.create(status=BackupStatus.FAILED, format="portable", error="x")
    client = client_for(request.getfixturevalue(role))
    assert_problem(client.post(CREATE, {}, format="json"), 403)
    assert_problem(client.get(LIST), 403)
    assert_problem(client.get(detail(backup.pk)), 403)
    assert_problem(client.get(f"{detail(backup.pk)}/download"), 403)
    assert_problem(client.delete(detail(backup.pk)), 403)
    assert Backup.objects.count() == 1


def test_backup_input_is_strict(admin_user, client_for):
    client = client_for(admin_user)
    assert_problem(client.post(CREATE, {"formt": "portable"}, format="json"), 400, "formt")
    assert_problem(client.post(CREATE, {"format": "tar"}, format="json"), 400, "format")
    assert_problem(client.post(CREATE, {"note": "x" * 501}, format="json"), 400, "note")
    assert Backup.objects.count() == 0


@pytest.mark.skipif(connection.vendor == "postgresql", reason="pg_dump is usable on PostgreSQL")
def test_pg_dump_on_sqlite_is_a_400_naming_format(admin_user, client_for):
    body = assert_problem(
        client_for(admin_user).post(CREATE, {"format": "pg_dump"}, format="json"), 400, "format"
    )
    assert "not PostgreSQL" in json.dumps(body)


def test_auto_picks_portable_on_sqlite_and_pg_dump_on_postgresql(
    admin_user, client_for, django_capture_on_commit_callbacks
):
    accepted = start(client_for(admin_user), django_capture_on_commit_callbacks, {})
    assert accepted["requested_format"] == "auto"
    assert accepted["format"] == ("pg_dump" if connection.vendor == "postgresql" else "portable")
    assert Backup.objects.get(pk=accepted["id"]).status == BackupStatus.SUCCEEDED


def test_a_failed_backup_records_why_and_has_no_download(admin_user, client_for):
    backup = Backup.objects.create(status=BackupStatus.FAILED, format="portable", error="disk full")
    client = client_for(admin_user)
    assert client.get(detail(backup.pk)).json()["download_url"] is None
    assert_problem(client.get(f"{detail(backup.pk)}/download"), 404)


def test_a_running_backup_cannot_be_deleted_until_its_time_limit_has_passed(admin_user, client_for):
    backup = Backup.objects.create(status=BackupStatus.RUNNING, format="portable", started_at=timezone.now())
    client = client_for(admin_user)
    assert_problem(client.delete(detail(backup.pk)), 409)
    assert Backup.objects.filter(pk=backup.pk).exists()
    Backup.objects.filter(pk=backup.pk).update(started_at=timezone.now() - timedelta(hours=2))
    assert client.delete(detail(backup.pk)).status_code == 204


def test_a_backup_that_cannot_be_stored_fails_with_its_reason(
    admin_user, client_for, django_capture_on_commit_callbacks, settings
):
    settings.BACKUP_STORAGE = "no-such-storage"
    accepted = start(client_for(admin_user), django_capture_on_commit_callbacks)
    backup = Backup.objects.get(pk=accepted["id"])
    assert backup.status == BackupStatus.FAILED
    assert "no-such-storage" in backup.error
    assert backup.file_name == "" and backup.finished_at is not None


@override_settings(BACKUP_RETENTION_COUNT=2)
def test_retention_keeps_the_newest_successful_backups(
    admin_user, client_for, django_capture_on_commit_callbacks
):
    client = client_for(admin_user)
    failed = Backup.objects.create(status=BackupStatus.FAILED, format="portable", error="x")
    ids = [start(client, django_capture_on_commit_callbacks)["id"] for _ in range(3)]
    kept = set(Backup.objects.filter(status=BackupStatus.SUCCEEDED).values_list("pk", flat=True))
    assert {str(pk) for pk in kept} == set(ids[1:])
    assert Backup.objects.filter(pk=failed.pk).exists()  # only successful ones are pruned
    names = [name for name in backup_storage().listdir("")[1] if name.endswith(".zip")]
    assert sorted(names) == sorted(Backup.objects.get(pk=pk).file_name for pk in kept)


def test_admin_creates_a_backup_and_deletes_it(make_user, client, django_capture_on_commit_callbacks):
    client.force_login(make_user("admin", is_staff=True, is_superuser=True))
    changelist = reverse("admin:system_backup_changelist")
    page = client.get(changelist)
    assert page.status_code == 200 and b"Create backup" in page.content
    create = reverse("admin:system_backup_create")
    assert client.get(create).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(create, {"format": "portable", "note": "from the admin"})
    assert response.status_code == 302
    backup = Backup.objects.get()
    assert backup.status == BackupStatus.SUCCEEDED and backup.note == "from the admin"
    change = client.get(reverse("admin:system_backup_change", args=[backup.pk]))
    assert reverse("system-api:backup-download", args=[backup.pk]).encode() in change.content
    action = reverse("admin:system_backup_object_action", args=[backup.pk, "delete-backup"])
    assert client.get(action).status_code == 200  # the confirmation page
    assert client.post(action).status_code == 302
    assert not Backup.objects.exists()
    assert not backup_storage().exists(backup.file_name)


def test_admin_pages_refuse_a_developer(developer, client):
    developer.is_staff = True
    developer.save()
    client.force_login(developer)
    assert client.get(reverse("admin:system_backup_create")).status_code in (302, 403)


def test_backups_go_to_any_django_storage(
    admin_user, client_for, django_capture_on_commit_callbacks, settings
):
    """BACKUP_STORAGE names a STORAGES alias (S3 through django-storages works the same way)."""
    from django.core.files.storage import storages

    settings.STORAGES = {
        **settings.STORAGES,
        "backups": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    settings.BACKUP_STORAGE = "backups"
    client = client_for(admin_user)
    body = client.get(detail(start(client, django_capture_on_commit_callbacks)["id"])).json()
    assert body["status"] == "succeeded" and body["storage"] == "backups"
    storage = storages["backups"]
    with storage.open(body["file_name"], "rb") as stored:
        assert hashlib.sha256(stored.read()).hexdigest() == body["sha256"]
    assert storage.exists(f"{body['file_name']}.sha256")
    download = client.get(body["download_url"])
    assert hashlib.sha256(b"".join(download.streaming_content)).hexdigest() == body["sha256"]
    assert client.delete(detail(body["id"])).status_code == 204
    assert not storage.exists(body["file_name"])


def test_the_job_runs_only_once(db):
    from system.services.backups import backup_run
    from system.tasks import run_backup

    running = Backup.objects.create(status=BackupStatus.RUNNING, format="portable")
    done = Backup.objects.create(status=BackupStatus.SUCCEEDED, format="portable", file_name="x.zip")
    assert backup_run(backup_id=running.pk).status == BackupStatus.RUNNING  # a redelivered message
    assert run_backup.delay(str(done.pk)) is not None
    done.refresh_from_db()
    assert done.status == BackupStatus.SUCCEEDED and done.file_name == "x.zip"
    assert backup_run(backup_id="00000000-0000-0000-0000-000000000000") is None
    assert not backup_storage().exists("x.zip")
