"""POST /system/restart/{service} against a real Celery worker (on the configured broker: the
embedded filesystem transport by default, Redis when CELERY_BROKER_URL is set; both broadcast)."""

import pytest

from agentmesh.celery import app as celery_app
from system.models import ControlRequest, WorkerHeartbeat
from tests.live_worker import start_worker
from tests.system.restart_probe import record_config_reloads
from tests.system.worker_probe import record_connections_opened

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker):
    """A worker that keeps its database connection (so closing it shows) and loads the probes."""
    with django_db_blocker.unblock():
        live = start_worker(
            include="tests.system.worker_probe,tests.system.restart_probe",
            extra_env={"DATABASE_CONN_MAX_AGE": "60"},
        )
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    try:
        live.wait_ready()
        live.name = live.node_name
        yield live
    finally:
        celery_app.conf.task_always_eager = eager
        live.stop()


def process_stats(name: str) -> dict | None:
    replies = celery_app.control.broadcast(
        "agentmesh_process_stats", destination=[name], reply=True, timeout=3, limit=1
    )
    return replies[0][name] if replies else None


def run_probe(worker, task, key: str) -> int:
    worker.send(task, key)
    return worker.wait_for(lambda: WorkerHeartbeat.objects.filter(hostname=key).first()).beats


def test_restart_workers_replaces_the_pool_processes(worker, client_for, admin_user):
    before = worker.wait_for(lambda: (s := process_stats(worker.name)) and s["pool"] and s)
    old_pool = {p["pid"] for p in before["pool"]}
    assert all(p["rss_bytes"] > 0 for p in before["pool"]) and before["rss_bytes"] > 0

    response = client_for(admin_user).post(
        "/api/v1/system/restart/workers", {"workers": [worker.name]}, format="json"
    )

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["parameters"] == {"workers": [worker.name], "mode": "pool_restart"}
    assert body["replies"] == [{"worker": worker.name, "ok": "reload started"}]

    def new_pool():
        stats = process_stats(worker.name)
        pids = {p["pid"] for p in (stats or {}).get("pool", [])}
        return stats if pids and not pids & old_pool else None

    after = worker.wait_for(new_pool, timeout=20)
    assert after["pid"] == before["pid"]  # the worker itself stayed; only its pool was replaced
    assert ControlRequest.objects.get(pk=body["id"]).replies == body["replies"]
    # The new pool process runs tasks.
    assert run_probe(worker, record_config_reloads, "after-pool-restart") == 0


def test_metrics_show_the_workers_processes(worker, client_for, admin_user):
    body = client_for(admin_user).get("/api/v1/system/metrics").json()
    mine = [p for p in body["processes"] if p["name"] == worker.name]
    assert len(mine) == 1 and mine[0]["role"] == "worker"
    assert mine[0]["rss_bytes"] > 10_000_000 and len(mine[0]["pool"]) == 1


def test_restart_connections_reaches_the_pool_processes(worker, client_for, admin_user):
    opened = run_probe(worker, record_connections_opened, "conn-a")
    assert run_probe(worker, record_connections_opened, "conn-b") == opened  # kept (CONN_MAX_AGE 60)

    response = client_for(admin_user).post(
        "/api/v1/system/restart/connections", {"workers": [worker.name]}, format="json"
    )

    assert response.status_code == 202
    (reply,) = response.json()["replies"]
    assert reply["worker"] == worker.name and reply["ok"] == "connections"
    assert reply["pool_processes"] == 1
    # The pool process closed its connection before its next task: that task opened a new one.
    assert run_probe(worker, record_connections_opened, "conn-c") == opened + 1
    assert run_probe(worker, record_connections_opened, "conn-d") == opened + 1


def test_restart_config_sends_the_reload_signal_in_the_pool_processes(worker, client_for, admin_user):
    reloads = run_probe(worker, record_config_reloads, "cfg-a")

    response = client_for(admin_user).post(
        "/api/v1/system/restart/config", {"workers": [worker.name]}, format="json"
    )

    assert response.status_code == 202
    body = response.json()
    assert body["result"]["local"]["receivers"] >= 1  # this process's receivers (the probe's too)
    (reply,) = body["replies"]
    assert reply["ok"] == "config" and reply["main_process"]["receivers"] >= 1
    assert run_probe(worker, record_config_reloads, "cfg-b") == reloads + 1


def test_restart_caches_closes_the_workers_cache_clients(worker, client_for, admin_user):
    response = client_for(admin_user).post(
        "/api/v1/system/restart/caches", {"workers": [worker.name]}, format="json"
    )

    assert response.status_code == 202
    (reply,) = response.json()["replies"]
    assert reply["ok"] == "caches" and "closed" in reply["main_process"]
    assert run_probe(worker, record_config_reloads, "after-caches") >= 0  # still works


def test_a_worker_without_pool_restarts_says_so_and_a_warm_shutdown_stops_it(client_for, admin_user):
    other = start_worker(name="shutdown", extra_env={"CELERY_WORKER_POOL_RESTARTS": "0"})
    try:
        other.wait_ready()
        name = other.node_name
        refused = client_for(admin_user).post(
            "/api/v1/system/restart/workers", {"workers": [name]}, format="json"
        )
        (reply,) = refused.json()["replies"]
        assert reply["worker"] == name and "Pool restarts not enabled" in reply["error"]

        response = client_for(admin_user).post(
            "/api/v1/system/restart/workers", {"workers": [name], "mode": "shutdown"}, format="json"
        )
        assert response.status_code == 202
        body = response.json()
        assert body["replies"] == [{"worker": name, "shutdown": "sent"}]
        assert body["result"] == {"mode": "shutdown", "sent": True}
        other.process.wait(timeout=30)  # a warm shutdown: it exits by itself, cleanly
        assert other.process.returncode == 0, other.log()
    finally:
        other.stop()  # also unbinds its remote-control queue (filesystem broker)
