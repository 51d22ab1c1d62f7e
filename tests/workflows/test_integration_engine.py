"""The engine's durability on real Celery worker processes (not eager): a wide join fires once,
a worker killed with SIGKILL mid-step loses nothing (and a side effect keyed by the step's
idempotency key happens once), a broker restart loses no run, and an overdue run times out.

The recovery paths call `scheduler.reap()` from the test process, as the beat task does every
15 s. Runs under `make test` (SQLite file + filesystem broker) and CI (PostgreSQL + Redis); the
broker-restart test always brings its own throw-away redis-server so the shared one is never
touched.
"""

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import kombu.pools
import pytest
from django.db import close_old_connections

from agentmesh.celery import app as celery_app
from tests.live_worker import LiveWorker, kill_worker
from tests.live_worker import start_worker as start_live_worker
from tests.workflows import integration_nodes  # noqa: F401  registers test_side_effect here
from tests.workflows.conftest import linear, transform
from workflows import services
from workflows.engine import scheduler
from workflows.models import StepExecution, WorkflowExecution

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# The worker processes load the test node types (test_sleep, test_side_effect) too.
INCLUDE = "tests.workflows.handlers,tests.workflows.integration_nodes"
TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")


# --- workers, brokers and a counting HTTP server ------------------------------------------------
def start_worker(queue: str, *, name: str, broker_url: str | None = None, concurrency: int = 1, env=None):
    """A worker on `queue` that also loads the test node types."""
    return start_live_worker(
        queue, name=name, broker_url=broker_url, concurrency=concurrency, include=INCLUDE, extra_env=env
    )


def wait_ready(*workers: LiveWorker) -> None:
    for worker in workers:
        worker.wait_ready()


def _reset_producers() -> None:
    # kombu keeps process-wide pools keyed by broker URL: closing only the app's would leave a
    # closed pool there for the next test that sends on the default broker.
    kombu.pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@contextlib.contextmanager
def engine_on(queue: str, broker_url: str | None = None):
    """Tasks this process sends (execute, reap) go to `queue` (on `broker_url`), not eager."""
    conf = celery_app.conf
    saved = (conf.task_always_eager, conf.task_default_queue, conf.broker_url, conf.broker_transport_options)
    saved_env = os.environ.get("CELERY_BROKER_URL")
    if broker_url:
        _reset_producers()
        # Celery reads CELERY_BROKER_URL from the environment before its own setting.
        os.environ["CELERY_BROKER_URL"] = broker_url
        conf.broker_url, conf.broker_transport_options = broker_url, {}
        assert celery_app.connection_for_write().port == urlsplit(broker_url).port
    conf.task_always_eager, conf.task_default_queue = False, queue
    try:
        yield
    finally:
        if broker_url:
            _reset_producers()
            if saved_env is None:
                os.environ.pop("CELERY_BROKER_URL", None)
            else:
                os.environ["CELERY_BROKER_URL"] = saved_env
        conf.task_always_eager, conf.task_default_queue, conf.broker_url, conf.broker_transport_options = (
            saved
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class RedisServer:
    """A throw-away redis-server (no persistence: a restart loses every message it held)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not _port_open(self.port):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


class SideEffectServer:
    """An HTTP endpoint that charges once per Idempotency-Key, as a payment API would, and
    counts every request it receives."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.effects: Counter = Counter()
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = self.headers.get("Idempotency-Key", "")
                with lock:
                    server.requests.append(key)
                    if key not in server.effects:  # the side effect, once per key
                        server.effects[key] += 1
                    body = json.dumps({"charged": server.effects[key], "key": key}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/charge"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _queue() -> str:
    return f"wf2-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{uuid.uuid4().hex[:8]}"


def _ended(execution_id) -> WorkflowExecution | None:
    close_old_connections()
    return WorkflowExecution.objects.filter(pk=execution_id, status__in=TERMINAL).first()


def _reaped_until_ended(execution_id):
    def check():
        scheduler.reap()  # what the beat task does every 15 s
        return _ended(execution_id)

    return check


@pytest.fixture(scope="module")
def two_workers(django_db_setup, django_db_blocker):
    """Two worker processes with two pool processes each, sharing one queue."""
    queue = _queue()
    with django_db_blocker.unblock():
        workers = [start_worker(queue, name=f"w{i}", concurrency=2) for i in range(2)]
    try:
        wait_ready(*workers)
        yield workers
    finally:
        for worker in workers:
            worker.stop()


# --- the tests ------------------------------------------------------------------------------------
def test_fan_out_of_50_branches_joins_exactly_once(two_workers, developer):
    """50 branches end at nearly the same moment on 4 pool processes: the join runs once."""
    branches = [
        {"id": f"b{i}", "type": "test_sleep", "config": {"seconds": 0.05 * (i % 3)}} for i in range(50)
    ]
    definition = {
        "nodes": [
            transform("start", "go"),
            *branches,
            transform(
                "join",
                "{{ steps.values() | map(attribute='status') | select('eq', 'succeeded') | list | length }}",
            ),
        ],
        "edges": [{"source": "start", "target": b["id"]} for b in branches]
        + [{"source": b["id"], "target": "join"} for b in branches],
        "outputs": {"succeeded_before_join": "{{ steps.join.output }}"},
    }
    workflow = services.workflow_create(owner=developer, name="fan-50", definition=definition)
    worker = two_workers[0]
    with engine_on(worker.queue):
        execution, _ = services.workflow_execute(workflow=workflow, user=developer)
        finished = worker.wait_for(lambda: _ended(execution.pk), timeout=60)
    assert finished.status == "succeeded", finished.error
    assert finished.outputs == {"succeeded_before_join": 51}  # start + 50 branches were done
    steps = StepExecution.objects.filter(execution=finished)
    assert steps.filter(node_id="join").count() == 1
    assert steps.count() == 52 and steps.filter(status="succeeded").count() == 52
    per_node = Counter(steps.values_list("node_id", flat=True))
    assert set(per_node.values()) == {1}  # no node got a second row
    branches = steps.filter(node_type="test_sleep")
    assert set(branches.values_list("dispatches", flat=True)) == {1}  # each claimed once
    pure = steps.exclude(node_type="test_sleep")  # start and join: evaluated in place, no claim
    assert set(pure.values_list("dispatches", flat=True)) == {0}
    pools = set(branches.values_list("worker", flat=True))
    assert len(pools) == 2, pools  # both worker processes took branches


def test_a_run_past_its_deadline_ends_timed_out_and_stays_so(two_workers, developer, settings):
    """The reaper times the run out while its step still runs; the step ending later changes
    nothing (terminal states never change) and no later node starts."""
    definition = linear(
        {"id": "slow", "type": "test_sleep", "config": {"seconds": 3}},
        transform("after", "never"),
        timeout_seconds=1,
    )
    workflow = services.workflow_create(owner=developer, name="overdue", definition=definition)
    worker = two_workers[0]
    with engine_on(worker.queue):
        execution, _ = services.workflow_execute(workflow=workflow, user=developer)
        worker.wait_for(lambda: StepExecution.objects.filter(execution=execution, status="running").exists())
        finished = worker.wait_for(_reaped_until_ended(execution.pk), timeout=15, interval=0.2)
        assert finished.status == "timed_out"
        assert finished.error == "The run exceeded its deadline."
        assert StepExecution.objects.get(execution=execution, node_id="slow").status == "running"
        # the orphaned step finishes on its worker a little later
        step = worker.wait_for(
            lambda: StepExecution.objects.filter(
                execution=execution, node_id="slow", status="succeeded"
            ).first(),
            timeout=15,
        )
    finished.refresh_from_db()
    assert finished.status == "timed_out" and finished.outputs is None
    assert step.output == "slept"
    assert not StepExecution.objects.filter(execution=execution, node_id="after").exists()


def test_a_worker_killed_mid_step_loses_nothing_and_the_side_effect_happens_once(developer, settings):
    """SIGKILL the worker after the step's side effect and before its result is recorded; a new
    worker starts; the reaper re-dispatches the step once its lease expired; the re-run sends
    the same idempotency key, so the side effect happens once and the run completes."""
    settings.WORKFLOWS_LEASE_GRACE_SECONDS = 1
    api = SideEffectServer()
    definition = linear(
        transform("before", "ready"),
        {
            "id": "charge",
            "type": "test_side_effect",
            "config": {"url": api.url, "seconds": 2},
            "timeout_seconds": 3,
        },
        transform("after", "{{ steps.charge.output.charged }}"),
        outputs={"charged": "{{ steps.after.output }}"},
    )
    workflow = services.workflow_create(owner=developer, name="killed", definition=definition)
    queue = _queue()
    env = {"WORKFLOWS_LEASE_GRACE_SECONDS": "1"}
    first = start_worker(queue, name="first", env=env)
    second = None
    try:
        wait_ready(first)
        with engine_on(queue):
            execution, _ = services.workflow_execute(workflow=workflow, user=developer)
            first.wait_for(lambda: api.requests, timeout=15, interval=0.02)  # the side effect happened
            kill_worker(first)
            step = StepExecution.objects.get(execution=execution, node_id="charge")
            assert step.status == "running" and step.dispatches == 1  # orphaned mid-step
            second = start_worker(queue, name="second", env=env)  # the restarted worker
            wait_ready(second)
            finished = second.wait_for(_reaped_until_ended(execution.pk), timeout=30, interval=0.3)
    finally:
        api.stop()
        for worker in (first, second):
            if worker is not None and worker.process.poll() is None:
                worker.stop()
    assert finished.status == "succeeded", finished.error
    assert finished.outputs == {"charged": 1}
    step.refresh_from_db()
    assert step.status == "succeeded" and step.attempt == 1 and step.dispatches == 2
    assert step.worker.startswith(f"{queue}-second@")
    assert api.requests == [step.idempotency_key, step.idempotency_key]  # sent twice, same key
    assert api.effects == {step.idempotency_key: 1}  # done once
    assert StepExecution.objects.filter(execution=execution).count() == 3  # no extra attempts


def test_a_broker_restart_mid_run_loses_no_run(developer, settings):
    """The broker (a private redis-server without persistence) dies while a step runs: the next
    step's message cannot be sent, a run started during the outage cannot send its first step,
    and whatever the broker held is gone after the restart. The reaper re-sends the queued
    steps and both runs complete."""
    settings.WORKFLOWS_REDISPATCH_QUEUED_AFTER_SECONDS = 1
    redis = RedisServer().start()
    queue = _queue()
    env = {"WORKFLOWS_WORKER_CONTINUES": "0"}  # "two" must go through the broker, not stay with the worker
    worker = start_worker(queue, name="w", broker_url=redis.url, concurrency=2, env=env)
    restarts = 0
    definition = linear(
        {"id": "one", "type": "test_sleep", "config": {"seconds": 1.5}},
        {"id": "two", "type": "test_sleep", "config": {"seconds": 0.1}},
        transform("three", "done"),
        outputs={"result": "{{ steps.three.output }}"},
    )
    workflow = services.workflow_create(owner=developer, name="broker", definition=definition)
    try:
        wait_ready(worker)
        with engine_on(queue, broker_url=redis.url):
            first, _ = services.workflow_execute(workflow=workflow, user=developer)
            worker.wait_for(lambda: StepExecution.objects.filter(execution=first, status="running").exists())
            redis.kill()
            # the step ends while the broker is down: "two" is queued but its message is not sent
            worker.wait_for(
                lambda: StepExecution.objects.filter(execution=first, node_id="two").exists(), timeout=15
            )
            second, _ = services.workflow_execute(workflow=workflow, user=developer)  # during the outage
            assert second.status == "running"
            time.sleep(1.5)  # longer than the publish retries of the worker
            redis.start()  # same port, empty
            assert StepExecution.objects.get(execution=first, node_id="two").status == "queued"
            assert StepExecution.objects.get(execution=second, node_id="one").status == "queued"
            deadline = time.monotonic() + 40
            while not (_ended(first.pk) and _ended(second.pk)):
                assert time.monotonic() < deadline, f"runs not recovered; worker log:\n{worker.log()}"
                if worker.process.poll() is not None:
                    # Celery 5.7 / kombu 5.7 may exit on the lost connection ("Unrecoverable
                    # error" restoring unacked messages): a supervisor restarts it, as here.
                    restarts += 1
                    worker = start_worker(
                        queue, name=f"restart{restarts}", broker_url=redis.url, concurrency=2, env=env
                    )
                scheduler.reap()  # what the beat task does every 15 s
                time.sleep(0.5)
    finally:
        if worker.process.poll() is None:
            worker.stop()
        redis.kill()
    assert restarts <= 1
    for run in (first, second):
        run.refresh_from_db()
        assert run.status == "succeeded", run.error
        assert run.outputs == {"result": "done"}
        steps = StepExecution.objects.filter(execution=run)
        assert sorted(steps.values_list("node_id", flat=True)) == ["one", "three", "two"]
        assert set(steps.values_list("status", flat=True)) == {"succeeded"}
