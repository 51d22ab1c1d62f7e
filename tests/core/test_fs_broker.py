"""The embedded broker never hands a reader a half-written message (it used to kill workers)."""

import threading
from queue import Empty

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


def test_filesystem_urls_get_this_transport_in_every_process_of_the_app():
    import agentmesh.celery  # noqa: F401 (what registers it; every process loads it)

    with Connection("filesystem://", transport_options={"data_folder_in": "/nonexistent"}) as conn:
        assert isinstance(conn.transport, Transport)
