"""Run the API (uvicorn, ASGI), a Celery worker and the beat scheduler together.

The embedded mode of `make run`. SIGTERM (`docker stop`, systemd), SIGINT (Ctrl-C) or SIGHUP
stop all of them: each gets SIGTERM (uvicorn and beat stop, the worker shuts down warm and lets
running steps finish), and whatever still runs after `--stop-timeout` seconds is killed with
its whole process group (the worker's pool children too); a second signal kills at once. A
requested stop exits 0. When one process exits on its own, the others are stopped the same way
and serve exits 1, so a supervisor restarts the set.
"""

import contextlib
import ctypes
import gc
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def api_command(host: str, port: str | int) -> list[str]:
    """uvicorn, told to leave X-Forwarded-For alone: by default it believes the header from
    127.0.0.1, so any local client could pick its address; the app reads the header itself when
    TRUSTED_PROXY_COUNT says to (agentmesh.core.throttling.client_address)."""
    return [
        sys.executable, "-m", "uvicorn", "agentmesh.asgi:application",
        "--host", host, "--port", str(port), "--no-proxy-headers",
    ]  # fmt: skip


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM if serve itself is killed (SIGKILL, the OOM killer), so no
    process is left behind holding the port or consuming the queue."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start_child(command: list[str]) -> subprocess.Popen:
    """Start `command` as the leader of a process group of its own (a new session): signals
    from the terminal reach serve only, and serve can kill the child's whole group."""
    return subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
        command,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        # preexec_fn is safe here: serve runs no other thread
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def stop_children(processes: dict[str, subprocess.Popen], *, timeout: float, hurry) -> list[str]:
    """SIGTERM to each child (its main process only: Celery's warm shutdown stops its own pool),
    wait up to `timeout` (less when `hurry()` turns true), then SIGKILL every process group,
    stragglers of children that already exited included, and reap the children. Returns the
    names of the children that had to be killed."""
    for process in processes.values():
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not hurry():
        if all(process.poll() is not None for process in processes.values()):
            break
        time.sleep(0.05)
    killed = [name for name, process in processes.items() if process.poll() is None]
    for process in processes.values():
        _signal_group(process, signal.SIGKILL)
    for process in processes.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
    return killed


class Command(BaseCommand):
    help = "Serve the API with uvicorn together with a Celery worker and beat (embedded mode)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--concurrency", default=os.environ.get("WORKER_CONCURRENCY", "2"))
        parser.add_argument("--no-worker", action="store_true", help="Serve the API only.")
        parser.add_argument(
            "--stop-timeout",
            type=float,
            default=float(
                os.environ.get("SERVE_STOP_TIMEOUT", settings.WORKFLOWS_SHUTDOWN_GRACE_SECONDS + 3)
            ),
            help="Seconds the processes get to stop after SIGTERM before they are killed "
            "(default: WORKFLOWS_SHUTDOWN_GRACE_SECONDS + 3, so running steps are handed back).",
        )

    def handle(self, *args, host, port, concurrency, no_worker, stop_timeout, **options):
        python = sys.executable
        commands = {"api": api_command(host, port)}
        if not no_worker:
            commands["worker"] = [
                python, "-m", "celery", "-A", "agentmesh", "worker",
                "--concurrency", str(concurrency), "--pool", "prefork", "-l", "INFO",
                # the only worker: no peers to sync with at start or to gossip with (faster start/stop)
                "--without-mingle", "--without-gossip",
            ]  # fmt: skip
            commands["beat"] = [
                python, "-m", "celery", "-A", "agentmesh", "beat",
                "-s", settings.CELERY_BEAT_SCHEDULE_FILENAME, "-l", "INFO",
            ]  # fmt: skip

        received: list[int] = []

        def on_signal(signum, _frame):
            received.append(signum)

        # Before the first child starts: a signal during start-up stops what already runs.
        previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
        processes: dict[str, subprocess.Popen] = {}
        exited: list[str] = []
        try:
            for name, command in commands.items():
                if received:
                    break
                processes[name] = start_child(command)
            if not received:
                self.stdout.write(self.style.SUCCESS(f"Agent Mesh API on http://{host}:{port}/api/docs/"))
                self.stdout.write(
                    f"Broker: {settings.CELERY_BROKER_URL.split('@')[-1]} — "
                    "Ctrl-C (or SIGTERM) stops everything."
                )
                if settings.DEBUG:
                    self.stdout.write(
                        self.style.WARNING("DEBUG is on: error pages show internals. Do not expose it.")
                    )
            while not received:
                exited = [name for name, p in processes.items() if p.poll() is not None]
                if exited:
                    break
                time.sleep(0.2)
        finally:
            if exited:
                codes = ", ".join(f"{name} ({processes[name].returncode})" for name in exited)
                self.stderr.write(f"{codes} exited; stopping the others.")
            elif received:
                self.stdout.write(f"{signal.Signals(received[0]).name} received; stopping.")
            # A signal while stopping (Ctrl-C twice) kills at once.
            signals_before = len(received)
            killed = stop_children(
                processes, timeout=stop_timeout, hurry=lambda: len(received) > signals_before
            )
            if killed:
                self.stderr.write(f"{', '.join(killed)} did not stop in time: killed.")
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        # Nothing of this process is needed any more: its exit need not garbage-collect the whole
        # loaded project (seconds on a busy machine), objects alive now are left out of the
        # final collection.
        gc.freeze()
        if exited:
            raise CommandError("a process exited on its own; all stopped.", returncode=1)
        self.stdout.write("Stopped.")
