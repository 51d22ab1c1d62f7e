"""The backup job on a real Celery worker (not eager): POST /system/backup answers 202 at
once, the worker writes the archive to the shared BACKUP_DIR, the API serves it."""

import hashlib

import pytest

from agentmesh.celery import app as celery_app
from system.models import Backup, BackupStatus
from tests.live_worker import start_worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_real_worker_runs_the_backup_job(admin_user, client_for, tmp_path, settings):
    settings.BACKUP_DIR = tmp_path
    worker = start_worker(extra_env={"BACKUP_DIR": str(tmp_path)})
    eager, queue = celery_app.conf.task_always_eager, celery_app.conf.task_default_queue
    celery_app.conf.task_always_eager, celery_app.conf.task_default_queue = False, worker.queue
    try:
        client = client_for(admin_user)
        response = client.post("/api/v1/system/backup", {"format": "portable"}, format="json")
        assert response.status_code == 202 and response.json()["status"] == "pending"
        backup_id = response.json()["id"]
        backup = worker.wait_for(
            lambda: Backup.objects.filter(pk=backup_id, status__in=["succeeded", "failed"]).first(),
            timeout=90,
        )
    finally:
        celery_app.conf.task_always_eager, celery_app.conf.task_default_queue = eager, queue
        worker.stop()
    assert backup.status == BackupStatus.SUCCEEDED, backup.error
    assert (tmp_path / backup.file_name).is_file()
    download = client.get(f"/api/v1/system/backups/{backup_id}/download")
    assert hashlib.sha256(b"".join(download.streaming_content)).hexdigest() == backup.sha256
