"""GET /system/status against real Celery workers on the configured broker (the filesystem
broker by default, Redis with CELERY_BROKER_URL) and the real database: a worker up (name,
host, concurrency, active tasks, its queue) and then down; beat's tick published, run by a
worker and shown; the no-live-worker check resolving while a worker is up."""

import os
import subprocess
import sys
import time
import uuid

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from agentmesh.celery import app as celery_app
from system import selectors, services
from system.models import BeatTick, CheckState
from system.tasks import record_beat_tick
from tests.live_worker import ROOT, LiveWorker, database_url, start_worker
from tests.system.status_probe import wait_for_file

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

URL = "/api/v1/system/status"


@pytest.fixture(autouse=True)
def _measure_every_time(settings):
    settings.SYSTEM_STATUS_CACHE_SECONDS = 0
    # Real workers on a machine running the whole suite: give the broadcast room (the deadline
    # itself is tested with a hanging broker in test_status.py).
    settings.SYSTEM_STATUS_PROBE_TIMEOUT_SECONDS = 10
    selectors.status_cache_clear()
    yield
    selectors.status_cache_clear()


def _mine(body: dict, worker) -> dict | None:
    return next(
        (w for w in body["components"]["workers"]["workers"] if w["name"].startswith(worker.queue)), None
    )


def _settled(fetch, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = fetch()
        if body["components"]["workers"]["status"] != "unknown" or time.monotonic() > deadline:
            return body
        time.sleep(0.5)


def test_a_real_worker_is_up_with_its_details_then_down(client_for, admin_user, tmp_path):
    admin = client_for(admin_user)
    worker = start_worker(name="status", concurrency=2, include="tests.system.status_probe")
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    try:
        worker.wait_ready()
        mine = worker.wait_for(lambda: _mine(admin.get(URL).json(), worker), timeout=30, interval=0.2)
        assert mine["source"] == "ping"
        assert mine["concurrency"] == 2
        assert mine["active_tasks"] == 0
        assert worker.queue in mine["queues"]
        assert isinstance(mine["pid"], int) and mine["host"]
        body = admin.get(URL).json()
        assert body["components"]["workers"]["status"] == "up"
        assert {"name": worker.queue, "depth": 0} in body["components"]["queues"]["queues"]

        gate = tmp_path / "release"
        worker.send(wait_for_file, str(gate))
        worker.wait_for(lambda: (_mine(admin.get(URL).json(), worker) or {}).get("active_tasks") == 1)
        gate.touch()
        worker.wait_for(lambda: (_mine(admin.get(URL).json(), worker) or {}).get("active_tasks") == 0)

        assert services.system_checks_evaluate(keys=["no_live_worker"]) == {"no_live_worker": CheckState.OK}
    finally:
        celery_app.conf.task_always_eager = eager
        worker.stop()

    # On a loaded machine one poll's broadcast may outlast the probe deadline (`unknown`, which
    # is the truth then); the answer settles on what is so.
    body = _settled(lambda: admin.get(URL).json())
    assert _mine(body, worker) is None
    workers = body["components"]["workers"]
    if not workers["workers"]:  # no other worker on this broker (another test module may run one)
        assert workers["status"] == "down" and body["status"] != "ok"
    # the summary says the same to everyone
    summary = _settled(lambda: client_for(admin_user).get(URL).json())
    assert summary["components"]["workers"]["status"] == workers["status"]


def test_beat_tick_is_stamped_on_publish_run_by_a_worker_and_shown(live_worker, client_for, admin_user):
    live_worker.send(record_beat_tick)  # what beat does every SYSTEM_BEAT_TICK_SECONDS
    sent = BeatTick.objects.get(key="beat").sent_at  # written by the publishing process
    assert sent is not None

    tick = live_worker.wait_for(lambda: BeatTick.objects.filter(key="beat", ran_at__isnull=False).first())
    assert tick.sent_at == sent
    assert tick.ticks == 1 and tick.worker.startswith(live_worker.queue)
    assert tick.ran_at >= sent and tick.lag_ms == pytest.approx(
        (tick.ran_at - sent).total_seconds() * 1000, abs=1
    )

    beat = client_for(admin_user).get(URL).json()["components"]["beat"]
    assert beat["status"] == "up"
    assert beat["last_run_at"] == tick.ran_at.isoformat().replace("+00:00", "Z")
    assert beat["ticks"] == 1


def test_a_real_beat_records_its_ticks_with_and_without_workers(client_for, admin_user, tmp_path, settings):
    """Beat's own process records each tick it publishes (so beat shows up with no worker);
    a worker then runs the ticks; once beat stops, it turns silent and the check fires."""
    queue = f"beat-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.system.beat_settings",
        "STATUS_TEST_BEAT_QUEUE": queue,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": celery_app.conf.broker_url,
        "AGENTMESH_VAR_DIR": str(django_settings.VAR_DIR),
    }
    log = tmp_path / "beat.log"
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "agentmesh",
        "beat",
        "-s",
        str(tmp_path / "schedule"),
        "-l",
        "INFO",
    ]
    with log.open("wb") as out:
        beat = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    worker = None
    try:
        probe = LiveWorker(queue, beat, log)  # its wait_for reports beat's log if beat exits
        first = probe.wait_for(lambda: BeatTick.objects.filter(sent_at__isnull=False).first(), timeout=60)
        assert first.ran_at is None  # nobody consumes the queue: beat itself recorded the tick
        probe.wait_for(lambda: BeatTick.objects.get().sent_at > first.sent_at, timeout=10)
        body = client_for(admin_user).get(URL).json()
        assert body["components"]["beat"]["status"] == "up"

        worker = start_worker(queue=queue, name="beat")
        tick = worker.wait_for(lambda: BeatTick.objects.filter(ran_at__isnull=False).first(), timeout=60)
        assert tick.ticks >= 1 and tick.worker.startswith(f"{queue}-beat@")
        assert tick.lag_ms is not None and tick.lag_ms >= 0
    finally:
        beat.terminate()
        beat.wait(timeout=15)
        if worker is not None:
            worker.stop()
        with celery_app.connection_for_write() as conn:
            conn.default_channel.queue_purge(queue)

    settings.SYSTEM_BEAT_SILENT_SECONDS = 2
    silent_for = (timezone.now() - BeatTick.objects.get().sent_at).total_seconds()
    time.sleep(max(0.0, 2.2 - silent_for))  # beat is gone: no tick can come any more
    body = client_for(admin_user).get(URL).json()
    assert body["components"]["beat"]["status"] == "down"
    assert services.system_checks_evaluate(keys=["beat_silent"]) == {"beat_silent": CheckState.FIRING}
