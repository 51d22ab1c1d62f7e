import time

import pytest
from django.db import connection

from system.models import WorkerHeartbeat
from system.tasks import record_worker_heartbeat

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_real_worker_runs_task_and_writes_to_the_database(live_worker):
    live_worker.send(record_worker_heartbeat, "probe-host")
    beat = live_worker.wait_for(lambda: WorkerHeartbeat.objects.filter(hostname="probe-host").first())
    assert beat.beats == 1

    live_worker.send(record_worker_heartbeat, "probe-host")
    live_worker.wait_for(lambda: WorkerHeartbeat.objects.filter(hostname="probe-host", beats=2).exists())


@pytest.mark.parametrize(("max_age", "kept"), [("60", True), ("0", False)])
def test_a_worker_keeps_its_database_connection_for_conn_max_age(max_age, kept):
    """Celery's Django fixup would close it around every task; DATABASE_CONN_MAX_AGE decides."""
    from agentmesh.celery import app as celery_app
    from tests.live_worker import start_worker
    from tests.system.worker_probe import record_connections_opened

    worker = start_worker(include="tests.system.worker_probe", extra_env={"DATABASE_CONN_MAX_AGE": max_age})
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    try:
        opened = []
        for n in range(3):
            worker.send(record_connections_opened, f"conn-{max_age}-{n}")
            row = worker.wait_for(
                lambda n=n: WorkerHeartbeat.objects.filter(hostname=f"conn-{max_age}-{n}").first()
            )
            opened.append(row.beats)
    finally:
        celery_app.conf.task_always_eager = eager
        worker.stop()
    if kept:
        assert opened[0] == opened[1] == opened[2], opened
    else:
        assert opened[0] < opened[1] < opened[2], opened


@pytest.mark.skipif(connection.vendor != "postgresql", reason="reads pg_stat_activity")
def test_a_worker_holds_no_connection_after_a_task_with_conn_max_age_0(live_worker):
    """The close runs after every app's postrun handler, the observability flush included."""
    from observability import services

    with services.span("caller"):  # the task gets a trace: its span is flushed at postrun
        live_worker.send(record_worker_heartbeat, "idle-after")
    live_worker.wait_for(lambda: WorkerHeartbeat.objects.filter(hostname="idle-after").exists())

    def others() -> list:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return cursor.fetchall()

    deadline = time.monotonic() + 5
    while others() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert others() == []
