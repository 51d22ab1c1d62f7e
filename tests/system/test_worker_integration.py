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
