import pytest

from observability import buffer


@pytest.fixture(autouse=True)
def _flush_immediately(settings):
    """Write buffered samples/logs/counters at the end of every request (no batching delay)."""
    settings.OBSERVABILITY_FLUSH_SECONDS = 0
    buffer.BUFFER.drain()
    yield
    buffer.BUFFER.drain()
