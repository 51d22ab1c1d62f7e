"""The embedded broker never hands a reader a half-written message (it used to kill workers)."""

import threading
from queue import Empty

import pytest
from kombu import Connection

from agentmesh.core.fs_broker import Transport


def _connection(folder, transport):
    for sub in ("queue", "processed"):
        (folder / sub).mkdir(exist_ok=True)
    options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "store_processed": False,
    }
    return Connection("filesystem://", transport=transport, transport_options=options)


def _race(folder, transport, messages: int = 1000) -> tuple[int, list[Exception]]:
    """A writer thread and a reader thread on one queue; big payloads widen the window in which
    a message file exists but is not written yet."""
    payload = {"body": "x" * 200_000}
    errors: list[Exception] = []
    received = 0
    done = threading.Event()

    def write():
        with _connection(folder, transport) as conn:
            channel = conn.channel()
            for _ in range(messages):
                channel._put("jobs", payload)
        done.set()

    def read():
        nonlocal received
        with _connection(folder, transport) as conn:
            channel = conn.channel()
            while received < messages:
                try:
                    message = channel._get("jobs")
                except Empty:
                    if done.is_set() and not any((folder / "queue").iterdir()):
                        return
                    continue
                except Exception as exc:  # what killed workers: JSONDecodeError on a partial file
                    errors.append(exc)
                    return
                if message != payload:
                    errors.append(AssertionError("a message came back changed"))
                    return
                received += 1

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return received, errors


def test_a_reader_racing_a_writer_gets_every_message_whole(tmp_path):
    received, errors = _race(tmp_path, Transport)
    assert errors == []
    assert received == 1000


def test_the_embedded_broker_is_this_transport():
    from django.conf import settings

    if not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        pytest.skip("the suite runs on another broker (CELERY_BROKER_URL); checked on the embedded one")
    from agentmesh.celery import app

    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, Transport)
