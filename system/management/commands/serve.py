"""Run the API (uvicorn, ASGI), a Celery worker and the beat scheduler together.

The embedded mode of `make run`; Ctrl-C (or any one process exiting) stops all of them.
"""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand


def api_command(host: str, port: str | int) -> list[str]:
    """uvicorn, told to leave X-Forwarded-For alone: by default it believes the header from
    127.0.0.1, so any local client could pick its address; the app reads the header itself when
    TRUSTED_PROXY_COUNT says to (agentmesh.core.throttling.client_address)."""
    return [
        sys.executable, "-m", "uvicorn", "agentmesh.asgi:application",
        "--host", host, "--port", str(port), "--no-proxy-headers",
    ]  # fmt: skip


class Command(BaseCommand):
    help = "Serve the API with uvicorn together with a Celery worker and beat (embedded mode)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--concurrency", default=os.environ.get("WORKER_CONCURRENCY", "2"))
        parser.add_argument("--no-worker", action="store_true", help="Serve the API only.")

    def handle(self, *args, host, port, concurrency, no_worker, **options):
        python = sys.executable
        commands = {"api": api_command(host, port)}
        if not no_worker:
            commands["worker"] = [
                python, "-m", "celery", "-A", "agentmesh", "worker",
                "--concurrency", str(concurrency), "--pool", "prefork", "-l", "INFO",
            ]  # fmt: skip
            commands["beat"] = [
                python, "-m", "celery", "-A", "agentmesh", "beat",
                "-s", settings.CELERY_BEAT_SCHEDULE_FILENAME, "-l", "INFO",
            ]  # fmt: skip
        processes = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}  # noqa: S603
        self.stdout.write(self.style.SUCCESS(f"Agent Mesh API on http://{host}:{port}/api/docs/"))
        self.stdout.write(f"Broker: {settings.CELERY_BROKER_URL.split('@')[-1]} — Ctrl-C stops everything.")
        if settings.DEBUG:
            self.stdout.write(
                self.style.WARNING("DEBUG is on: error pages show internals. Do not expose it.")
            )

        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                exited = [name for name, p in processes.items() if p.poll() is not None]
                if exited:
                    self.stderr.write(f"{', '.join(exited)} exited; stopping the others.")
                    break
                time.sleep(0.5)
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for process in processes.values():
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
