"""Every answer under /api/ is JSON in the error shape, DEBUG or not; `make run` serves without DEBUG."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.http import HttpResponse
from django.test import Client, override_settings
from django.urls import path
from django.views.decorators.http import require_POST

from tests.api_base import assert_problem
from tests.testapp.urls import urlpatterns as test_urlpatterns

ROOT = Path(__file__).resolve().parents[2]


def _boom(request):
    raise RuntimeError("secret internals in the traceback")


@require_POST
def _post_only(request):
    return HttpResponse("ok")


# Plain Django views under /api/ (outside DRF): what Django renders itself must become JSON too.
urlpatterns = [
    path("api/v1/test/boom", _boom),
    path("api/v1/test/post-only", _post_only),
    *test_urlpatterns,
]

both_modes = pytest.mark.parametrize("debug", [True, False], ids=["DEBUG", "no-DEBUG"])


def assert_not_a_debug_page(response):
    text = response.content.decode()
    assert "Django" not in text and "URLconf" not in text and "Traceback" not in text, text[:300]
    assert "secret internals" not in text


@pytest.mark.django_db
@both_modes
@pytest.mark.parametrize("url", ["/api/v1/no-such-endpoint", "/api/v2/tools", "/api/"])
def test_unknown_api_path_is_a_json_404(client, debug, url):
    with override_settings(DEBUG=debug):
        response = client.get(url)
    body = assert_problem(response, 404)
    assert body["errors"][0]["code"] == "not_found"
    assert_not_a_debug_page(response)


@pytest.mark.django_db
@both_modes
@pytest.mark.parametrize(
    ("method", "url", "right"),
    [
        ("get", "/api/v1/tools/", "/api/v1/tools"),
        ("post", "/api/v1/auth/login/", "/api/v1/auth/login"),
        ("get", "/api/v1/system/health/", "/api/v1/system/health"),
        ("delete", "/api/v1/master-data/skills/00000000-0000-0000-0000-000000000000/", None),
    ],
)
def test_trailing_slash_is_a_json_404_naming_the_path_without_it(client, debug, method, url, right):
    with override_settings(DEBUG=debug):
        response = getattr(client, method)(url)
    body = assert_problem(response, 404)
    assert_not_a_debug_page(response)
    right = right or url.rstrip("/")  # a detail path: named whether the object exists or not
    assert body["errors"][0]["code"] == "trailing_slash"
    assert f"use {right}." in body["detail"]


@pytest.mark.django_db
@both_modes
def test_wrong_method_is_a_json_405(client, debug, django_user_model):
    with override_settings(DEBUG=debug, ROOT_URLCONF=__name__):
        drf = client.get("/api/v1/auth/login")
        plain = client.get("/api/v1/test/post-only")
    assert_problem(drf, 405)
    assert_problem(plain, 405)
    assert django_user_model.objects.count() == 0  # replacing an answer leaves the connection open
    assert plain["Allow"] == "POST"  # headers of the replaced answer are kept


@pytest.mark.django_db
@both_modes
def test_server_error_outside_drf_is_json_500_without_traceback(debug):
    client = Client(raise_request_exception=False)
    with override_settings(DEBUG=debug, ROOT_URLCONF=__name__):
        response = client.get("/api/v1/test/boom")
    body = assert_problem(response, 500)
    assert body["detail"] == "An internal error occurred."
    assert_not_a_debug_page(response)


@pytest.mark.django_db
@both_modes
def test_disallowed_host_on_an_api_path_is_json_400(debug):
    with override_settings(DEBUG=debug):
        response = Client(HTTP_HOST="evil.example").get("/api/v1/system/health")
    assert_problem(response, 400)
    assert_not_a_debug_page(response)


@pytest.mark.django_db
def test_pages_outside_the_api_keep_html(client):
    with override_settings(DEBUG=False):
        response = client.get("/no-such-page")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")
    assert_not_a_debug_page(response)


# --- what `make run` serves ---------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def make_run_server(tmp_path_factory):
    """`manage.py serve` (the command `make run` runs) with the dev settings and a clean environment."""
    var = tmp_path_factory.mktemp("make-run-var")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(var)),
        "DJANGO_SETTINGS_MODULE": "agentmesh.settings.dev",
        "AGENTMESH_VAR_DIR": str(var),
        "DATABASE_URL": f"sqlite:///{var / 'db.sqlite3'}",
        "CACHE_URL": "locmem://",
        "LOG_LEVEL": "WARNING",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=300)
    port = _free_port()
    log = (var / "serve.log").open("wb")
    process = subprocess.Popen(  # noqa: S603
        [*manage, "serve", "--no-worker", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, (var / "serve.log").read_text()
        try:
            httpx.get(base + "/api/v1/system/health", timeout=2)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, (var / "serve.log").read_text()
            time.sleep(0.2)
    yield base, var
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
    log.close()


def test_make_run_serves_json_errors_without_debug_and_its_static_files(make_run_server):
    base, var = make_run_server
    with httpx.Client(base_url=base, timeout=10) as http:
        missing = http.get("/api/v1/no-such-endpoint")
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/json"
        assert missing.json()["status"] == 404
        slash = http.get("/api/v1/tools/")
        assert slash.status_code == 404 and "use /api/v1/tools." in slash.json()["detail"]
        page = http.get("/no-such-page")
        assert page.status_code == 404 and "URLconf" not in page.text and "DEBUG" not in page.text

        assert http.get("/admin/login/").status_code == 200
        css = http.get("/static/admin/css/base.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        docs = http.get("/api/docs/")
        assert docs.status_code == 200
        bundle = re.search(r'src="([^"]*swagger-ui-bundle\.js)"', docs.text).group(1)
        assert http.get(bundle).status_code == 200
    # The first run generated the instance's own secret key.
    assert (var / "secret_key").stat().st_mode & 0o777 == 0o600


def test_an_error_the_browsable_api_renders_as_html_is_sent_as_json(rf):
    """With DEBUG=1 the browsable API renders HTML for browsers; its errors are sent as their JSON."""
    from rest_framework.response import Response

    from agentmesh.core.exceptions import problem
    from agentmesh.core.middleware import ApiErrorsAsJsonMiddleware

    def browsable(request):
        response = Response(problem(404, "No such tool."), status=404, content_type="text/html")
        response.content = b"<html>browsable API page</html>"
        return response

    response = ApiErrorsAsJsonMiddleware(browsable)(rf.get("/api/v1/tools/x", HTTP_ACCEPT="text/html"))
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert json.loads(response.content) == problem(404, "No such tool.")
