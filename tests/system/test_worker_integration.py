import pytest

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
