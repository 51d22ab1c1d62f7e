"""A task for the status integration tests (loaded by the worker with --include): it stays
active until a file appears (at most 30 s)."""

import time
from pathlib import Path

from celery import shared_task


@shared_task(name="tests.system.wait_for_file")
def wait_for_file(path: str) -> None:
    deadline = time.monotonic() + 30
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
