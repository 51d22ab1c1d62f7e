"""GET /system/status on the unit-test stack (SQLite, eager tasks, an empty filesystem broker of
the test's own so no worker answers): roles, details, runs, beat's tick, the per-process cache
and a hanging component answered within the deadline."""

import os
import socket
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from agentmesh.celery import app as celery_app
from system import selectors, services
from system.models import BeatTick, WorkerHeartbeat
from system.selectors import status as status_module
from system.selectors.status import run_probes
from system.tasks import record_beat_tick
from tests.api_base import assert_problem
from tests.system.status_helpers import (
    make_execution,
    make_run,
)

URL = "/api/v1/system/status"
COMPONENTS = {"database", "cache", "broker", "workers", "beat", "queues", "runs"}


@pytest.fixture(autouse=True)
def _quiet_broker(quiet_broker):
    """An empty broker of this test's own (tests/system/conftest.py)."""


def test_anonymous_is_401(api_client, db):
    assert_problem(api_client.get(URL), 401)


@pytest.mark.parametrize("role", ["developer", "plain_user"])
def test_developers_and_users_see_the_summary_only(request, client_for, role):
    user = request.getfixturevalue(role)
    body = client_for(user).get(URL).json()
    assert body["status"] in ("ok", "degraded", "down")
    assert set(body["components"]) == COMPONENTS
    for name, component in body["components"].items():
        assert component == {"status": component["status"]}, name  # no detail at all
    assert "latency_ms" not in str(body)


def test_admins_see_the_details(client_for, admin_user, developer):
    for status in ("queued", "queued", "running", "succeeded"):
        make_run(developer, status)
    for status in ("queued", "running", "waiting", "waiting", "failed"):
        make_execution(developer, status)

    body = client_for(admin_user).get(URL).json()

    c = body["components"]
    assert c["database"]["status"] == "up"
    assert c["database"]["vendor"] in ("sqlite", "postgresql")
    assert c["database"]["latency_ms"] >= 0
    assert c["cache"]["status"] == "up"
    assert c["broker"] == {"status": "up", "transport": "filesystem", "latency_ms": c["broker"]["latency_ms"]}
    # nobody listens on this broker: no worker, so the system is degraded (not down)
    assert c["workers"]["status"] == "down"
    assert c["workers"]["count"] == 0 and c["workers"]["workers"] == []
    assert c["beat"]["status"] == "down" and c["beat"]["last_tick_at"] is None
    assert c["queues"]["status"] == "up"
    assert {"name": "celery", "depth": 0} in c["queues"]["queues"]
    assert c["runs"]["agent_runs"] == {"queued": 2, "running": 1}
    assert c["runs"]["workflow_executions"] == {"queued": 1, "running": 1, "waiting": 2}
    assert body["status"] == "degraded"


@pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored")
def test_queue_depth_counts_waiting_messages(client_for, admin_user, settings):
    settings.SYSTEM_STATUS_QUEUES = ["status-depth"]
    with celery_app.connection_for_write() as conn:  # this test's broker, to a queue nobody consumes
        for n in range(3):
            celery_app.send_task(
                "system.tasks.record_worker_heartbeat", args=[f"h{n}"], queue="status-depth", connection=conn
            )
    body = client_for(admin_user).get(URL).json()
    assert {"name": "status-depth", "depth": 3} in body["components"]["queues"]["queues"]


def test_beat_tick_is_recorded_and_shown(client_for, admin_user, settings):
    sent = timezone.now() - timedelta(seconds=2)
    record_beat_tick.delay(sent_at=sent.isoformat())  # eager: what a worker does with beat's tick

    tick = BeatTick.objects.get()
    assert tick.sent_at == sent and tick.ticks == 1
    assert tick.ran_at >= sent and tick.lag_ms >= 2000

    beat = client_for(admin_user).get(URL).json()["components"]["beat"]
    assert beat["status"] == "up"
    assert beat["last_tick_at"] == tick.ran_at.isoformat().replace("+00:00", "Z")
    assert beat["lag_ms"] == tick.lag_ms and beat["ticks"] == 1


def test_beat_is_down_once_its_tick_is_older_than_the_bound(client_for, admin_user, settings):
    settings.SYSTEM_BEAT_SILENT_SECONDS = 60
    services.beat_tick_sent(at=timezone.now() - timedelta(seconds=61))
    beat = client_for(admin_user).get(URL).json()["components"]["beat"]
    assert beat["status"] == "down" and beat["age_seconds"] > 60

    services.beat_tick_sent()  # beat publishing again (recorded even with no worker)
    selectors.status_cache_clear()
    assert client_for(admin_user).get(URL).json()["components"]["beat"]["status"] == "up"


def test_publishing_the_tick_stamps_it_and_records_beat_alive(db):
    """What beat's process does: the publish hook writes sent_at and adds it to the task's
    arguments (a real publish to this test's broker; no worker runs it)."""
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    try:
        before = timezone.now()
        with celery_app.connection_for_write() as conn:
            record_beat_tick.apply_async(queue="status-beat-tick", connection=conn)
    finally:
        celery_app.conf.task_always_eager = eager
    tick = BeatTick.objects.get()
    assert tick.sent_at >= before and tick.ran_at is None
    with celery_app.connection_for_write() as conn:
        message = conn.SimpleQueue("status-beat-tick").get(timeout=2)
        assert message.payload[1]["sent_at"] == tick.sent_at.isoformat()
        message.ack()


def test_the_heartbeat_table_stands_in_when_the_broadcast_fails(client_for, admin_user, settings):
    WorkerHeartbeat.objects.create(hostname="w1", seen_at=timezone.now(), beats=1)
    WorkerHeartbeat.objects.create(hostname="old", seen_at=timezone.now() - timedelta(hours=1), beats=1)
    celery_app.conf.broker_write_url = "redis://127.0.0.1:1/0"  # nothing listens: the broadcast fails

    body = client_for(admin_user).get(URL).json()

    assert body["components"]["broker"]["status"] == "down"
    assert "127.0.0.1:1" in body["components"]["broker"]["error"]
    workers = body["components"]["workers"]
    assert workers["status"] == "up"
    assert [(w["name"], w["source"]) for w in workers["workers"]] == [("w1", "heartbeat")]
    assert body["status"] == "down"  # the broker is critical


def test_status_is_cached_per_process_for_the_configured_seconds(client_for, admin_user, developer, settings):
    settings.SYSTEM_STATUS_CACHE_SECONDS = 30
    admin = client_for(admin_user)
    first = admin.get(URL).json()
    assert first["cached"] is False
    make_run(developer, "queued")

    second = admin.get(URL).json()
    assert second["cached"] is True
    assert second["checked_at"] == first["checked_at"]
    assert second["components"]["runs"]["agent_runs"]["queued"] == 0  # not measured again
    # everyone shares the one measurement (the summary is cut from it)
    assert client_for(developer).get(URL).json()["checked_at"] == first["checked_at"]

    settings.SYSTEM_STATUS_CACHE_SECONDS = 0
    third = admin.get(URL).json()
    assert third["cached"] is False and third["checked_at"] > first["checked_at"]
    assert third["components"]["runs"]["agent_runs"]["queued"] == 1


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers (a hung Redis)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self):
        self.stopped.set()
        for conn in self.conns:
            conn.close()
        self.sock.close()


def _wait_for_probe_threads():
    for thread in list(status_module._inflight.values()):
        thread.join(5)
        assert not thread.is_alive()


def test_a_hanging_broker_does_not_hang_the_endpoint(client_for, admin_user, settings):
    server = SilentServer()
    settings.SYSTEM_STATUS_PROBE_TIMEOUT_SECONDS = 0.5
    celery_app.conf.broker_write_url = f"redis://127.0.0.1:{server.port}/0"
    try:
        started = time.monotonic()
        body = client_for(admin_user).get(URL).json()
        took = time.monotonic() - started

        assert took < 2.0, took
        c = body["components"]
        for name in ("broker", "workers", "queues"):
            assert c[name]["status"] == "unknown", (name, c[name])
            assert c[name]["error"] == "no answer within 0.5 s"
        assert c["database"]["status"] == "up" and c["cache"]["status"] == "up"
        assert body["status"] == "down"

        # the hung probes are not started again while they still hang
        settings.SYSTEM_STATUS_CACHE_SECONDS = 0
        started = time.monotonic()
        again = client_for(admin_user).get(URL).json()
        assert time.monotonic() - started < 1.0
        assert again["components"]["broker"]["error"] == "the previous probe has not returned yet"
    finally:
        server.close()  # the hung clients get EOF: their probe threads end
        _wait_for_probe_threads()


def test_a_hanging_cache_is_unknown_within_the_deadline(settings, db):
    """(Through the API a hung cache also holds up the request's throttling, before the view.)"""
    server = SilentServer()
    settings.SYSTEM_STATUS_PROBE_TIMEOUT_SECONDS = 0.5
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{server.port}/0",
        }
    }
    try:
        started = time.monotonic()
        status = selectors.system_status(detail=True)
        assert time.monotonic() - started < 1.5
        assert status["components"]["cache"] == {"status": "unknown", "error": "no answer within 0.5 s"}
        assert status["components"]["broker"]["status"] == "up"
        assert status["status"] == "degraded"
    finally:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        server.close()
        _wait_for_probe_threads()


def test_run_probes_reports_each_probe_within_the_deadline():
    release = threading.Event()

    def hangs():
        release.wait(10)
        return {}

    def fails():
        raise ConnectionError("refused by redis://user:hunter2@db.internal:6379/0")

    started = time.monotonic()
    results = run_probes({"slow": hangs, "bad": fails, "good": lambda: {"x": 1}}, timeout=0.3)
    release.set()
    assert time.monotonic() - started < 1.0
    assert results["slow"]["status"] == "unknown"
    assert results["bad"]["status"] == "down"
    assert "hunter2" not in results["bad"]["error"] and "db.internal" in results["bad"]["error"]
    assert results["good"]["status"] == "up" and results["good"]["x"] == 1


def test_housekeeping_deletes_unread_broadcasts_of_the_filesystem_broker(tmp_path, settings):
    """A dead worker's broadcast queue stays bound on the filesystem broker: each broadcast
    leaves a file there that nobody reads. The beat tick deletes those older than a minute."""
    folder = tmp_path / "queue"
    folder.mkdir()
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(folder)}
    old_broadcast = folder / "1_a.gone@host.celery.pidbox.msg"
    old_reply = folder / "2_b.abc.reply.celery.pidbox.msg"
    fresh_broadcast = folder / "3_c.alive@host.celery.pidbox.msg"
    old_task = folder / "4_d.celery.msg"
    for path in (old_broadcast, old_reply, fresh_broadcast, old_task):
        path.write_text("{}")
    an_hour_ago = time.time() - 3600
    for path in (old_broadcast, old_reply, old_task):
        os.utime(path, (an_hour_ago, an_hour_ago))

    assert services.broker_housekeeping() == 2
    assert sorted(p.name for p in folder.iterdir()) == [fresh_broadcast.name, old_task.name]


def test_measuring_the_status_costs_a_fixed_number_of_queries(developer, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_run(developer, "queued")
    with CaptureQueriesContext(connection) as few:
        selectors.system_status(detail=True, max_age=0)
    for status in ("queued", "running", "succeeded") * 5:
        make_run(developer, status)
        make_execution(developer, status)
        WorkerHeartbeat.objects.create(
            hostname=f"h-{WorkerHeartbeat.objects.count()}", seen_at=timezone.now()
        )
    with CaptureQueriesContext(connection) as many:
        status = selectors.system_status(detail=True, max_age=0)
    assert status["components"]["runs"]["agent_runs"] == {"queued": 6, "running": 5}
    assert len(many.captured_queries) == len(few.captured_queries) <= 6
