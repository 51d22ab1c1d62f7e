"""A real Celery worker subprocess for integration tests (not eager).

It consumes a queue of its own on the configured broker (the filesystem transport under
var/ by default, Redis/RabbitMQ when CELERY_BROKER_URL is set) and opens the same test
database as the test process, so tests using it need `django_db(transaction=True)`.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import connection

from agentmesh.celery import app as celery_app

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] or ""
    if s.get("PASSWORD"):
        auth += f":{s['PASSWORD']}"
    host = f"{auth}@" if auth else ""
    return f"postgres://{host}{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class LiveWorker:
    def __init__(self, queue: str, process: subprocess.Popen, log_path: Path, node_name: str = ""):
        self.queue = queue
        self.process = process
        self.log_path = log_path
        self.node_name = node_name  # e.g. "test-gw0-1a2b3c4d@host": its remote-control name

    def send(self, task, *args, **kwargs):
        """Publish `task` to this worker's queue (never eager)."""
        return task.apply_async(args=args, kwargs=kwargs, queue=self.queue)

    def wait_for(self, predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited ({self.process.returncode}):\n{self.log()}")
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout}s; worker log:\n{self.log()}")

    def wait_ready(self, timeout: float = 60) -> None:
        self.wait_for(lambda: " ready." in self.log(), timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        forget_control_queue(self.node_name)


def forget_control_queue(node_name: str) -> None:
    """Unbind a stopped worker's remote-control queue on the filesystem broker and drop its messages.

    The filesystem transport never unbinds it by itself: every later broadcast (status pings,
    process stats, restarts) would leave one message file for each worker the suite ever started,
    in var/broker/queue, which every worker lists on each poll. Redis fans out without storing."""
    if not node_name or not str(celery_app.conf.broker_url).startswith("filesystem://"):
        return
    with celery_app.connection_for_write() as conn:
        conn.default_channel._delete(f"{node_name}.celery.pidbox", "celery.pidbox", "", "")


def start_worker(
    queue: str | None = None,
    *,
    name: str = "",
    concurrency: int = 1,
    broker_url: str | None = None,
    include: str = "",
    extra_env: dict | None = None,
) -> LiveWorker:
    """A prefork worker process consuming `queue` (a new one unless given: several workers
    may share one), on `broker_url` or the configured broker; `include` names extra modules
    for it to import (test task or node types)."""
    queue = queue or f"test-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{uuid.uuid4().hex[:8]}"
    label = f"{queue}-{name}" if name else queue
    log_path = Path(settings.VAR_DIR) / f"{label}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "agentmesh.settings.test",
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": broker_url or celery_app.conf.broker_url,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "AGENTMESH_VAR_DIR": str(settings.VAR_DIR),
        **(extra_env or {}),
    }
    cmd = [
        sys.executable, "-m", "celery", "-A", "agentmesh", "worker",
        "-Q", queue, "-c", str(concurrency), "--pool", "prefork",
        *(["--include", include] if include else []),
        "--without-heartbeat", "--without-gossip", "--without-mingle",
        "-n", f"{label}@%h", "-l", "INFO",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return LiveWorker(queue, process, log_path, node_name=f"{label}@{socket.gethostname()}")


def kill_worker(worker: LiveWorker) -> None:
    """SIGKILL the pool processes and the worker itself: nothing gets to ack, reject or clean up."""
    try:
        with open(f"/proc/{worker.process.pid}/task/{worker.process.pid}/children") as handle:
            children = [int(pid) for pid in handle.read().split()]
    except OSError:
        children = []
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    worker.process.kill()
    worker.process.wait(timeout=10)
    forget_control_queue(worker.node_name)
