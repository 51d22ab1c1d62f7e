"""The sync httpx2 safe client (the one the openai/anthropic SDKs get) against real loopback servers."""

import contextlib
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from agentmesh.core.safe_http import (
    ResponseTooLarge,
    SafeTransport2,
    UnsafeURLError,
    clear_allow_rule_cache,
    safe_httpx2_client,
)

BIG = b"x" * 3000


class CountingServer(ThreadingHTTPServer):
    """Counts accepted connections, so a test can prove a refused URL never reached it."""

    def __init__(self, host: str) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, 0), Handler)
        self.connections = 0
        self._lock = threading.Lock()

    def process_request(self, request, client_address) -> None:
        with self._lock:
            self.connections += 1
        super().process_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        pass  # the size-cap tests close the connection while the handler still writes

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        host = self.server_address[0]
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format, *args) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", parse_qs(parts.query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = BIG if parts.path.startswith("/big") else b"hello " + self.headers["Host"].encode()
        self.send_response(200)
        if parts.path != "/big-unsized":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def serving(host: str) -> Iterator[CountingServer]:
    server = CountingServer(host)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[CountingServer]:
    with serving("127.0.0.1") as srv:
        yield srv


@pytest.fixture(scope="module")
def second_server() -> Iterator[CountingServer]:
    """On 127.0.0.2: Linux routes all of 127.0.0.0/8 to the loopback interface."""
    with serving("127.0.0.2") as srv:
        yield srv


@pytest.fixture(scope="module")
def server_v6() -> Iterator[CountingServer]:
    try:
        with serving("::1") as srv:
            yield srv
    except OSError:
        pytest.skip("no IPv6 loopback here")


@pytest.fixture(autouse=True)
def _fresh_rules():
    clear_allow_rule_cache()
    yield
    clear_allow_rule_cache()


@pytest.fixture
def allow_nothing(settings):
    settings.SAFE_HTTP_ALLOWLIST = []


def get(url: str, **client_options) -> httpx2.Response:
    with safe_httpx2_client(timeout=2, **client_options) as client:
        response = client.get(url)
        response.read()
        return response


@pytest.mark.usefixtures("allow_nothing")
@pytest.mark.parametrize(
    "template",
    [
        "http://10.0.0.1:{port}/",
        "http://169.254.169.254:{port}/",
        "http://127.0.0.1:{port}/",
        "http://localhost:{port}/",  # a host name: refused by the network backend after resolving
        "http://[::ffff:127.0.0.1]:{port}/",
        "http://2130706433:{port}/",
        "file:///etc/passwd",
    ],
)
def test_refuses_non_public_addresses_and_sends_nothing(server, template):
    before = server.connections
    with pytest.raises(UnsafeURLError) as info:
        get(template.format(port=server.port))
    assert str(info.value)
    assert server.connections == before


@pytest.mark.usefixtures("allow_nothing")
def test_refuses_the_ipv6_loopback(server_v6):
    before = server_v6.connections
    with pytest.raises(UnsafeURLError, match="loopback"):
        get(f"{server_v6.url}/")
    assert server_v6.connections == before


def test_metadata_address_is_refused_even_when_allow_listed(settings):
    settings.SAFE_HTTP_ALLOWLIST = ["169.254.0.0/16"]
    with pytest.raises(UnsafeURLError, match="metadata"):
        get("http://169.254.169.254/latest/meta-data/")


def test_allow_listed_address_gets_the_response(server, settings):
    settings.SAFE_HTTP_ALLOWLIST = ["127.0.0.1"]
    response = get(f"{server.url}/")
    assert response.status_code == 200
    assert response.content == f"hello 127.0.0.1:{server.port}".encode()


def test_allow_listed_host_name_connects_to_the_checked_address_and_keeps_the_host(server, settings):
    settings.SAFE_HTTP_ALLOWLIST = ["localhost"]
    response = get(f"http://localhost:{server.port}/")
    assert response.content == f"hello localhost:{server.port}".encode()


def test_redirect_to_a_refused_address_is_refused(server, second_server, settings):
    settings.SAFE_HTTP_ALLOWLIST = ["127.0.0.1"]
    target = f"{second_server.url}/"
    before = second_server.connections
    with pytest.raises(UnsafeURLError, match=re.escape("127.0.0.2")) as info:
        get(f"{server.url}/redirect?to={target}")
    assert info.value.url == target
    assert second_server.connections == before


def test_redirect_to_a_metadata_address_is_refused(server, settings):
    settings.SAFE_HTTP_ALLOWLIST = ["127.0.0.1"]
    with pytest.raises(UnsafeURLError, match="metadata"):
        get(f"{server.url}/redirect?to=http://169.254.169.254/latest/")


def test_redirect_between_allowed_paths_is_followed(server, settings):
    settings.SAFE_HTTP_ALLOWLIST = ["127.0.0.1"]
    response = get(f"{server.url}/redirect?to=/big")
    assert response.content == BIG
    assert [r.status_code for r in response.history] == [302]


@pytest.mark.parametrize("path", ["/big", "/big-unsized"])
def test_response_larger_than_max_response_bytes(server, settings, path):
    settings.SAFE_HTTP_ALLOWLIST = ["127.0.0.1"]
    with pytest.raises(ResponseTooLarge):
        get(f"{server.url}{path}", max_response_bytes=len(BIG) - 1)
    assert get(f"{server.url}{path}", max_response_bytes=len(BIG)).content == BIG


def test_connection_refused_is_an_httpx2_connect_error(settings):
    settings.SAFE_HTTP_ALLOWLIST = ["127.0.0.1"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(httpx2.ConnectError):
            get(f"http://127.0.0.1:{port}/")


def test_safe_httpx2_client_refuses_options_that_bypass_the_guard(settings):
    for option in ("transport", "mounts", "proxy"):
        with pytest.raises(TypeError, match=option):
            safe_httpx2_client(**{option: None})
    client = safe_httpx2_client(timeout=3)
    assert isinstance(client._transport, SafeTransport2)
    assert client.timeout.read == 3
    assert client.timeout.connect == min(settings.SAFE_HTTP_CONNECT_TIMEOUT, 3)
    assert client.max_redirects == settings.SAFE_HTTP_MAX_REDIRECTS
    client.close()


def test_environment_proxies_are_ignored(server, settings, monkeypatch):
    """A proxy from the environment would connect to the proxy, not to the checked address."""
    settings.SAFE_HTTP_ALLOWLIST = []
    monkeypatch.setenv("HTTP_PROXY", f"{server.url}")
    monkeypatch.setenv("ALL_PROXY", f"{server.url}")
    before = server.connections
    with pytest.raises(UnsafeURLError):
        get("http://10.0.0.1/")
    assert server.connections == before
