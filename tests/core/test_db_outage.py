"""Database connections of the served API (uvicorn, production settings): a bounded pool, and
503 with Retry-After while PostgreSQL is unreachable, recovering without a restart when it
returns. The database "goes away" through a TCP proxy the test cuts, never the machine's server."""

import contextlib
import json
import os
import secrets
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import OperationalError, connection
from django.test import Client, override_settings
from django.urls import path
from rest_framework.views import APIView

from agentmesh.accounts.models import Role
from system.management.commands.serve import api_command
from tests.api_base import assert_problem
from tests.live_worker import ROOT

PASSWORD = "s3cure-Passw0rd!"
live_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (pool, pg_stat_activity): CI runs it"
)


# --- The mapping, in process (any database) ------------------------------------------------
def _lost(request):
    raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")


class _LostView(APIView):
    authentication_classes = []
    permission_classes = []

    def get(self, request):
        _lost(request)


urlpatterns = [
    path("api/v1/lost-drf", _LostView.as_view()),
    path("api/v1/lost-plain", _lost),
    path("lost-page", _lost),
]
handler500 = "agentmesh.core.views.server_error"


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
@pytest.mark.parametrize("url", ["/api/v1/lost-drf", "/api/v1/lost-plain"])
def test_a_database_error_answers_503_with_retry_after(url):
    response = Client(raise_request_exception=False).get(url)
    assert_problem(response, 503)
    assert response["Retry-After"] == "5"
    assert response.json()["errors"][0]["code"] == "database_unavailable"


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__, DEBUG=True)
def test_with_debug_too():
    response = Client(raise_request_exception=False).get("/api/v1/lost-plain")
    assert_problem(response, 503)
    assert response["Retry-After"] == "5"


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
def test_a_database_error_outside_the_api_answers_503_too():
    response = Client(raise_request_exception=False).get("/lost-page")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db
def test_an_unreachable_redis_cache_answers_503_not_500(developer):
    """The per-user throttle reads the cache on every request: a Redis cache that cannot be
    reached is a dependency outage like the database's (503, Retry-After), not a 500."""
    from rest_framework.test import APIClient

    unreachable = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{_closed_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 1},
        }
    }
    client = APIClient()
    client.force_authenticate(developer)
    with override_settings(CACHES=unreachable):
        response = client.get("/api/v1/tools")
    assert_problem(response, 503)
    assert response["Retry-After"] == "5"
    assert response.json()["errors"][0]["code"] == "cache_unavailable"


def test_a_storm_is_logged_once(caplog):
    from agentmesh.core import exceptions

    exceptions._unavailable_log.update(at=-1e9, suppressed=0)
    with caplog.at_level("WARNING", logger="agentmesh.core.exceptions"):
        for _ in range(20):
            exceptions.unavailable_response(OperationalError("gone"))
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert exceptions._unavailable_log["suppressed"] == 19


@pytest.mark.django_db
def test_after_a_failed_connection_the_backend_fails_fast_for_a_moment(monkeypatch):
    """Every access of a request to an unreachable database would wait again (the pool timeout
    or connect_timeout) without it: the end of the request records the request."""
    from django.db import connections

    from agentmesh.core.postgresql import base

    monkeypatch.setattr(base, "_process_unavailable_until", [0.0])
    closed = {"ENGINE": "agentmesh.core.postgresql", "NAME": "x", "USER": "postgres", "HOST": "127.0.0.1"}
    closed |= {"PORT": _free_port(), "OPTIONS": {"connect_timeout": 3}}
    settings_dicts = connections.configure_settings({"default": closed, "b": dict(closed)})
    first = base.DatabaseWrapper(settings_dicts["default"], alias="probe")
    with pytest.raises(OperationalError) as refused:
        first.ensure_connection()
    assert "a moment ago" not in str(refused.value)
    with pytest.raises(OperationalError, match="a moment ago"):
        first.ensure_connection()
    other_thread = base.DatabaseWrapper(settings_dicts["b"], alias="probe-b")  # the server's failure: all
    with pytest.raises(OperationalError, match="a moment ago"):
        other_thread.ensure_connection()
    monkeypatch.setattr(base, "_process_unavailable_until", [0.0])
    first._unavailable_until = 0.0
    with pytest.raises(OperationalError) as again:  # tried again after the moment
        first.ensure_connection()
    assert "a moment ago" not in str(again.value)


# --- The served API -------------------------------------------------------------------------
class CuttableProxy:
    """Forwards 127.0.0.1:<port> to PostgreSQL. cut() drops every forwarded connection and
    closes new ones at once (as a server that went away); restore() forwards again."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.sockets |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(src, dst)

    def _drop(self, *socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
            with self.lock:
                self.sockets.discard(sock)

    def cut(self) -> None:
        self.up = False
        with self.lock:
            socks = list(self.sockets)
        self._drop(*socks)

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url, *, body=None, token="", timeout=20) -> tuple[int, dict, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (127.0.0.1)
            return response.status, dict(response.headers), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"{}")


def serve(tmp_path, *, host: str, port: int, application_name: str, extra_env: dict) -> tuple:
    """uvicorn on production settings against the test database at host:port."""
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "agentmesh.settings.prod",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "FERNET_KEYS": Fernet.generate_key().decode(),
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "CACHE_URL": "locmem://",
        "AGENTMESH_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"postgres://{auth}@{host}:{port}/{s['NAME']}?application_name={application_name}",
        "LOG_FORMAT": "plain",
        **extra_env,
    }
    api_port = _free_port()
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603
            api_command("127.0.0.1", api_port), cwd=ROOT, env=env, stdout=log, stderr=log
        )
    base = f"http://127.0.0.1:{api_port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/v1/system/health", timeout=10)  # noqa: S310
            break
        except urllib.error.HTTPError:
            break  # answering
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
    return process, base, log_path


def _stop(process) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@pytest.fixture
def served_user(transactional_db, make_user):
    user = make_user(Role.DEVELOPER)
    # The served API runs the production password hashers (the suite hashes with MD5).
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, "outage-test-salt", iterations=1000)
    user.save(update_fields=["password"])
    return user


def _login(base, user) -> str:
    status, _, body = _request(
        f"{base}/api/v1/auth/login", body={"username": user.username, "password": PASSWORD}
    )
    assert status == 200, body
    return body["access"]


def _connections(application_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [application_name]
        )
        return cursor.fetchone()[0]


@live_postgresql
def test_the_served_api_keeps_its_connections_within_the_pool(served_user, tmp_path):
    name = f"pool-test-{uuid.uuid4().hex[:8]}"
    s = connection.settings_dict
    process, base, log_path = serve(
        tmp_path,
        host=s["HOST"] or "127.0.0.1",
        port=int(s["PORT"] or 5432),
        application_name=name,
        # What docker-compose set before the pool: 60 s connections that ASGI never reused.
        extra_env={
            "DATABASE_POOL_MAX_SIZE": "3",
            "DATABASE_POOL_MIN_SIZE": "1",
            "DATABASE_CONN_MAX_AGE": "60",
        },
    )
    try:
        token = _login(base, served_user)
        counts, stop = [], threading.Event()

        def sample() -> None:
            while not stop.is_set():
                counts.append(_connections(name))
                time.sleep(0.05)
            connection.close()

        sampler = threading.Thread(target=sample)
        sampler.start()
        with ThreadPoolExecutor(max_workers=12) as pool:
            statuses = list(
                pool.map(lambda _: _request(f"{base}/api/v1/workflows", token=token)[0], range(48))
            )
        stop.set()
        sampler.join()
        counts.append(_connections(name))
    finally:
        _stop(process)
    assert statuses == [200] * 48, log_path.read_text()[-3000:]
    assert counts and max(counts) <= 3, counts


@live_postgresql
def test_an_unreachable_database_answers_503_and_the_api_recovers(served_user, tmp_path):
    s = connection.settings_dict
    proxy = CuttableProxy(s["HOST"] or "127.0.0.1", int(s["PORT"] or 5432))
    process, base, log_path = serve(
        tmp_path,
        host="127.0.0.1",
        port=proxy.port,
        application_name=f"outage-test-{uuid.uuid4().hex[:8]}",
        extra_env={"DATABASE_POOL_MAX_SIZE": "4", "DATABASE_POOL_TIMEOUT": "3"},
    )
    try:
        token = _login(base, served_user)
        assert _request(f"{base}/api/v1/workflows", token=token)[0] == 200

        proxy.cut()
        for url, body in [
            (f"{base}/api/v1/workflows", None),
            (f"{base}/api/v1/agents", None),
            (f"{base}/api/v1/workflows", None),
            (f"{base}/api/v1/auth/login", {"username": served_user.username, "password": PASSWORD}),
        ]:
            started = time.monotonic()
            status, headers, problem = _request(url, body=body, token=token if body is None else "")
            assert status == 503, (status, problem, log_path.read_text()[-3000:])
            assert headers.get("Retry-After") == "5"
            assert problem["status"] == 503 and problem["errors"][0]["code"] == "database_unavailable"
            assert time.monotonic() - started < 10  # bounded: no hang
        with ThreadPoolExecutor(max_workers=6) as pool:  # a handful at once, all bounded too
            storm = list(pool.map(lambda _: _request(f"{base}/api/v1/workflows", token=token)[0], range(6)))
        assert storm == [503] * 6
        assert _request(f"{base}/api/v1/system/health")[0] == 503

        proxy.restore()
        restored = time.monotonic()
        while (status := _request(f"{base}/api/v1/workflows", token=token)[0]) != 200:
            assert status == 503 and time.monotonic() - restored < 30, status
            time.sleep(0.2)
        print(f"recovered {time.monotonic() - restored:.1f}s after the database returned")
        assert _request(f"{base}/api/v1/system/health")[0] in (200, 503)  # the broker may be absent
        log = log_path.read_text()
        assert "Traceback" not in log, log[-3000:]
        assert log.count("database unavailable, answering 503") == 1, log[-3000:]
    finally:
        _stop(process)
        proxy.close()


@live_postgresql
@pytest.mark.django_db(transaction=True)
def test_celery_workers_use_no_pool():
    """A prefork child keeps its own connection (DATABASE_CONN_MAX_AGE, here 0: none after a
    task), not a pool created in the parent before the fork."""
    from agentmesh.celery import app as celery_app
    from system.models import WorkerHeartbeat
    from system.tasks import record_worker_heartbeat
    from tests.live_worker import database_url, start_worker

    name = f"worker-test-{uuid.uuid4().hex[:8]}"
    worker = start_worker(
        extra_env={
            "DATABASE_URL": f"{database_url()}?application_name={name}",
            "DATABASE_POOL_MAX_SIZE": "3",
            "DATABASE_POOL_MIN_SIZE": "2",
            "DATABASE_CONN_MAX_AGE": "0",
        }
    )
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    try:
        worker.send(record_worker_heartbeat, name)
        worker.wait_for(lambda: WorkerHeartbeat.objects.filter(hostname=name).exists())
        deadline = time.monotonic() + 5
        while _connections(name) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _connections(name) == 0, worker.log()
    finally:
        celery_app.conf.task_always_eager = eager
        worker.stop()
