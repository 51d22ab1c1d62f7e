import itertools
import threading
import time

import pytest
import uvicorn
from django.core.cache import cache
from rest_framework.test import APIClient

from agentmesh.accounts.models import Role, User

_counter = itertools.count()


# --- Browser tests (tests/browser): say up front and at the end whether they ran or why not.
def pytest_report_header(config):
    from tests.browser.chromium import status_line

    return status_line()


def pytest_terminal_summary(terminalreporter):
    from tests.browser.chromium import status_line

    terminalreporter.write_line(status_line(), yellow="SKIPPED" in status_line())


@pytest.fixture(autouse=True)
def _clear_cache():
    from agentmesh.core.safe_http import clear_allow_rule_cache
    from system.services.config import STORED
    from system.services.flags import RULES

    cache.clear()
    # Each test's database starts with no runtime setting and no flag stored (no query to know).
    STORED.reset_empty()
    RULES.reset_empty()
    yield
    cache.clear()
    # Allow rules a test created vanish with its rolled-back transaction, without signals.
    clear_allow_rule_cache()


@pytest.fixture
def make_user(db):
    def make(role: str = Role.DEVELOPER, *, password: str = "s3cure-Passw0rd!", **extra) -> User:
        n = next(_counter)
        username = extra.pop("username", f"{role}{n}")
        user = User(
            username=username, email=extra.pop("email", f"{username}@example.com"), role=role, **extra
        )
        user.set_password(password)
        user.save()
        return user

    return make


@pytest.fixture
def developer(make_user):
    return make_user(Role.DEVELOPER)


@pytest.fixture
def other_developer(make_user):
    return make_user(Role.DEVELOPER)


@pytest.fixture
def plain_user(make_user):
    return make_user(Role.USER)


@pytest.fixture
def admin_user(make_user):
    return make_user(Role.ADMIN)


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def client_for():
    """An API client authenticated as the given user (JWT is covered by the auth tests)."""

    def make(user) -> APIClient:
        client = APIClient()
        client.force_authenticate(user)
        return client

    return make


@pytest.fixture(scope="module")
def live_worker(django_db_setup, django_db_blocker):
    """A real Celery worker process on the real broker, shared by a test module.

    Tests that use it need `@pytest.mark.django_db(transaction=True)` so their rows are
    committed and visible to the worker.
    """
    from agentmesh.celery import app as celery_app
    from tests.live_worker import start_worker

    with django_db_blocker.unblock():
        worker = start_worker()
    eager, default_queue = celery_app.conf.task_always_eager, celery_app.conf.task_default_queue
    # Tasks the code under test enqueues itself go to this worker's private queue too.
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_default_queue = worker.queue
    try:
        yield worker
    finally:
        celery_app.conf.task_always_eager = eager
        celery_app.conf.task_default_queue = default_queue
        worker.stop()


@pytest.fixture(scope="session", autouse=True)
def _drain_observability_buffer(django_db_setup):
    """Drop what tests left in the in-process observability buffer before the test database
    goes away (its exit-time flush would otherwise fail against a dropped database)."""
    yield
    from observability import buffer

    buffer.BUFFER.drain()


@pytest.fixture(scope="module")
def fake_api():
    """A real HTTP API on 127.0.0.1 (tests/fake_api.py) for tools and their callers."""
    from tests.fake_api import FakeAPI

    api = FakeAPI().start()
    yield api
    api.stop()


@pytest.fixture
def live_server_url(transactional_db):
    """The ASGI app served by uvicorn on a free port in this process (same test database)."""
    from agentmesh.asgi import application

    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def operator(make_user):
    """A Django test client logged in as a platform admin (superuser) using the admin console;
    `client.user` is the account."""
    from django.test import Client

    client = Client()
    client.user = make_user(Role.ADMIN, is_staff=True, is_superuser=True)
    client.force_login(client.user)
    return client


@pytest.fixture
def staff_developer(make_user):
    """A Django test client of a staff developer: may open the admin, is no platform admin."""
    from django.test import Client

    client = Client()
    client.force_login(make_user(Role.DEVELOPER, is_staff=True))
    return client
