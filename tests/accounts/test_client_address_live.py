"""The API as `manage.py serve` runs it (uvicorn): a client on the same machine cannot pick its
address with X-Forwarded-For (uvicorn believes the header from 127.0.0.1 unless told not to)."""

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from django.conf import settings

from agentmesh.accounts.models import Role
from system.management.commands.serve import api_command
from tests.live_worker import ROOT, database_url

PASSWORD = "s3cure-Passw0rd!"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url, body, headers=None) -> int:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (127.0.0.1)
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def served_api(transactional_db, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "agentmesh.settings.test",
        "DATABASE_URL": database_url(),
        "AGENTMESH_VAR_DIR": str(settings.VAR_DIR),
        "LOGIN_LOCKOUT_ENABLED": "1",
        "LOGIN_FAILURE_LIMIT": "3",
    }
    log = (tmp_path / "api.log").open("wb")
    process = subprocess.Popen(api_command("127.0.0.1", port), cwd=ROOT, env=env, stdout=log, stderr=log)  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/v1/system/health", timeout=5)  # noqa: S310
                break
            except urllib.error.HTTPError:
                break  # answering
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "api.log"
                ).read_text()
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_forged_forwarded_for_does_not_escape_the_address_lockout(served_api, make_user):
    user = make_user(Role.DEVELOPER)
    login = f"{served_api}/api/v1/auth/login"
    for n in range(3):
        forged = {"X-Forwarded-For": f"203.0.113.{n}"}
        assert post(login, {"username": f"nobody{n}", "password": "wrong"}, forged) in (401, 429)
    # the address (127.0.0.1) is locked, whatever the header says
    assert (
        post(login, {"username": user.username, "password": PASSWORD}, {"X-Forwarded-For": "203.0.113.77"})
        == 429
    )
