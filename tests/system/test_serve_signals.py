"""`manage.py serve` (what `make run` starts) as a supervisor sees it, with real processes:
SIGTERM or SIGINT stops the API, the worker with its pool children and beat within a few
seconds and exits 0; a child that dies on its own takes the others down and serve exits 1.
No process it started is left behind in any case.

Each test starts serve on a free port with a SQLite database, the filesystem broker and a var
directory of its own (the embedded defaults), so it runs the same on every machine.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.live_worker import ROOT

# serve's default --stop-timeout (WORKFLOWS_SHUTDOWN_GRACE_SECONDS 5 + 3): what still runs that
# long after SIGTERM is killed. A stop may take that plus a little for the reaping and the exit.
DEFAULT_STOP_TIMEOUT = 8
MARGIN = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of a process from /proc, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def _descendants(pid: int) -> dict[int, int]:
    """Every process below `pid` (children, theirs, …) -> its start time (tells a reused pid)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) and stat[0] != "Z":
            children.setdefault(stat[1], []).append(int(entry))
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if (stat := _stat(child)) is not None:
                found[child] = stat[2]
                todo.append(child)
    return found


def _alive(pid: int, started: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z" and stat[2] == started


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"


class Serve:
    def __init__(self, tmp_path: Path, stop_timeout: float | None = None):
        var = tmp_path / "var"
        self.port = _free_port()
        self.log_path = tmp_path / "serve.log"
        env = {
            **os.environ,
            # The embedded defaults of `make run`, in a directory of this test's own.
            "DJANGO_SETTINGS_MODULE": "agentmesh.settings.dev",
            "AGENTMESH_VAR_DIR": str(var),
            "DATABASE_URL": f"sqlite:///{var / 'agentmesh.sqlite3'}",
            "CELERY_BROKER_URL": "filesystem://",
            "CACHE_URL": "locmem://",
            "PYTHONUNBUFFERED": "1",
        }
        command = [sys.executable, "manage.py", "serve", "--port", str(self.port), "--concurrency", "1"]
        if stop_timeout is not None:
            command += ["--stop-timeout", str(stop_timeout)]
        self.stopped_within = (stop_timeout or DEFAULT_STOP_TIMEOUT) + MARGIN
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)  # noqa: S603
        self.started: dict[int, int] = {}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self) -> str:
        return self.log()[-6000:]

    def wait_running(self, timeout: float = 90) -> dict[int, int]:
        """Until the API answers, the worker is ready (its pool child started) and beat runs;
        returns every process below serve (pid -> start time)."""
        deadline = time.monotonic() + timeout
        answering = False
        while True:
            assert self.process.poll() is None, f"serve exited ({self.process.returncode}):\n{self.tail()}"
            assert time.monotonic() < deadline, f"serve did not come up:\n{self.tail()}"
            if not answering:
                try:
                    url = f"http://127.0.0.1:{self.port}/api/v1/system/health"
                    urllib.request.urlopen(url, timeout=5)  # noqa: S310 (127.0.0.1)
                    answering = True
                except urllib.error.HTTPError:
                    answering = True  # answering (503 without migrations is fine here)
                except OSError:
                    pass
            found = _descendants(self.process.pid)
            self.started.update(found)
            worker = [pid for pid in found if " worker " in _cmdline(pid)]
            # api, beat, the worker's main process and its pool child
            if answering and len(found) >= 4 and len(worker) >= 2 and " ready." in self.log():
                return found
            time.sleep(0.2)

    def pid_of(self, needle: str) -> int:
        """The child of serve whose command line contains `needle` (not a grandchild)."""
        for pid in self.started:
            stat = _stat(pid)
            if stat and stat[1] == self.process.pid and needle in _cmdline(pid):
                return pid
        raise AssertionError(f"no child running {needle!r}: {[_cmdline(p) for p in self.started]}")

    def wait_exit(self) -> tuple[int, float]:
        started = time.monotonic()
        try:
            code = self.process.wait(timeout=self.stopped_within)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve still running {self.stopped_within} s after the signal:\n{self.tail()}")
        return code, time.monotonic() - started

    def left_behind(self) -> list[str]:
        # Orphans are re-parented, so look at every pid seen, not at serve's tree now.
        deadline = time.monotonic() + 2  # the kernel reaps a SIGKILLed orphan asynchronously
        while True:
            alive = [pid for pid, started in self.started.items() if _alive(pid, started)]
            if not alive or time.monotonic() > deadline:
                return [f"{pid}: {_cmdline(pid)}" for pid in alive]
            time.sleep(0.05)

    def kill_everything(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        for pid, started in self.started.items():
            if _alive(pid, started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=5)


@pytest.fixture
def start_serve(tmp_path):
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc (Linux) to follow serve's processes")
    started: list[Serve] = []

    def start(**kwargs) -> Serve:
        started.append(Serve(tmp_path, **kwargs))
        return started[-1]

    yield start
    for serve in started:
        serve.kill_everything()  # a failed test leaves nothing running


@pytest.mark.parametrize(
    ("signum", "stop_timeout"),
    [
        # the default: time for the worker's warm shutdown
        (signal.SIGTERM, None),
        # a short one: whatever has not stopped after 2 s is killed with its process group
        (signal.SIGINT, 2),
    ],
    ids=["SIGTERM", "SIGINT-short-timeout"],
)
def test_a_stop_signal_ends_every_process_serve_started_and_exits_0(start_serve, signum, stop_timeout):
    serve = start_serve(stop_timeout=stop_timeout)
    processes = serve.wait_running()
    assert {"uvicorn", "worker", "beat"} <= {word for pid in processes for word in _cmdline(pid).split()}, (
        processes
    )

    serve.process.send_signal(signum)
    code, took = serve.wait_exit()

    assert code == 0, serve.tail()
    print(f"serve stopped {took:.1f} s after {signum.name}")
    assert took < serve.stopped_within
    assert serve.left_behind() == [], serve.tail()
    log = serve.log()
    assert f"{signum.name} received; stopping." in log
    assert "Warm shutdown" in log  # the worker was asked to finish, not killed first
    assert log.rstrip().endswith("Stopped."), log


def test_a_child_that_dies_stops_the_others_and_serve_exits_non_zero(start_serve):
    serve = start_serve()
    serve.wait_running()
    worker = serve.pid_of(" worker ")

    # The worker's main process killed outright: its pool child is orphaned, serve kills it too.
    os.kill(worker, signal.SIGKILL)
    code, _ = serve.wait_exit()

    assert code == 1, serve.tail()
    assert serve.left_behind() == [], serve.tail()
    assert "worker (-9) exited; stopping the others." in serve.log()
