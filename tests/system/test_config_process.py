"""A runtime configuration change and a flag change reach another running process (a separate
Python process on the same database, as a worker or another API process is) within
RUNTIME_CONFIG_CACHE_SECONDS; a value out of range is refused and never reaches it."""

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.api_base import assert_problem
from tests.live_worker import database_url

ROOT = Path(__file__).resolve().parent.parent.parent
BOUND = 1.0  # the other process's RUNTIME_CONFIG_CACHE_SECONDS

WATCHER = """
import time
import django
django.setup()
from agentmesh.core.features import flag_is_active, runtime_setting
last = None
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    now = (runtime_setting("AGENTS_DEFAULT_MAX_TURNS"), flag_is_active("streaming"))
    if now != last:
        print(f"{now[0]} {now[1]}", flush=True)
        last = now
    time.sleep(0.02)
"""


@pytest.fixture
def watcher(transactional_db):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "agentmesh.settings.test",
        "DATABASE_URL": database_url(),
        "RUNTIME_CONFIG_CACHE_SECONDS": str(BOUND),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", WATCHER],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.strip()) for line in process.stdout], daemon=True).start()

    def next_line(timeout: float) -> str | None:
        try:
            return lines.get(timeout=timeout)
        except queue.Empty:
            return None

    try:
        yield next_line
    finally:
        process.kill()
        process.wait(10)


def test_a_change_reaches_another_process_within_the_bound(watcher, admin_user, client_for):
    assert watcher(60) == "10 True"  # started: the defaults
    client = client_for(admin_user)

    response = client.put(
        "/api/v1/system/config", {"values": {"AGENTS_DEFAULT_MAX_TURNS": 5000}}, format="json"
    )
    assert_problem(response, 400, "values.AGENTS_DEFAULT_MAX_TURNS")  # out of range: refused

    changed = time.monotonic()
    response = client.put("/api/v1/system/config", {"values": {"AGENTS_DEFAULT_MAX_TURNS": 3}}, format="json")
    assert response.status_code == 200, response.json()
    line = watcher(BOUND + 3)
    seen = time.monotonic() - changed
    assert line == "3 True", line  # the refused 5000 never showed
    assert seen <= BOUND + 1.0, seen  # the bound, plus the poll and the pipe

    changed = time.monotonic()
    response = client.put("/api/v1/system/flags/streaming", {"everyone": False}, format="json")
    assert response.status_code == 200, response.json()
    assert watcher(BOUND + 3) == "3 False"
    assert time.monotonic() - changed <= BOUND + 1.0
