"""Fixtures shared by the system tests."""

import pytest

from tests.system.status_helpers import isolated_filesystem_broker, restore_broker


@pytest.fixture
def quiet_broker(tmp_path, settings):
    """An empty broker of this test's own, short broadcast waits, no status cached across tests."""
    from agentmesh.celery import app as celery_app
    from system import selectors

    settings.SYSTEM_STATUS_WORKER_REPLY_SECONDS = 0.2
    previous = isolated_filesystem_broker(celery_app, tmp_path / "broker")
    selectors.status_cache_clear()
    yield
    selectors.status_cache_clear()
    restore_broker(celery_app, previous)
