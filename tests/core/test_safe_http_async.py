"""The async (httpx2) safe client, the one the MCP SDK uses, against real servers on the loopback."""

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2
import pytest

from agentmesh.core.models import OutboundAllowRule
from agentmesh.core.safe_http import (
    ResponseTooLarge,
    SafeAsyncTransport,
    UnsafeURLError,
    clear_allow_rule_cache,
    safe_async_client,
)

BIG = b"x" * 5000


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

    @property
    def port(self) -> int:
        return self.server_address[1]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format, *args) -> None:
        pass

    def do_GET(self) -> None:
        body = BIG if self.path.startswith("/big") else b"hello " + self.headers["Host"].encode()
        self.send_response(200)
        if self.path != "/big-unsized":
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
    """One GET through safe_async_client, run the way the MCP executor runs it (its own event loop)."""

    async def main() -> httpx2.Response:
        async with safe_async_client(timeout=2, **client_options) as client:
            response = await client.get(url)
            await response.aread()
            return response

    return asyncio.run(main())


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
    url = template.format(port=server.port)
    before = server.connections
    with pytest.raises(UnsafeURLError) as info:
        get(url)
    assert str(info.value)
    assert server.connections == before


@pytest.mark.usefixtures("allow_nothing")
def test_refuses_the_ipv6_loopback(server_v6):
    before = server_v6.connections
    with pytest.raises(UnsafeURLError, match="loopback"):
        get(f"http://[::1]:{server_v6.port}/")
    assert server_v6.connections == before


def test_metadata_address_is_refused_even_when_allow_listed(settings):
    settings.SAFE_HTTP_ALLOWLIST = ["169.254.0.0/16"]
    with pytest.raises(UnsafeURLError, match="metadata"):
        get("http://169.254.169.254/latest/meta-data/")


def test_allow_listed_address_gets_the_response(server, settings):
    settings.SAFE_HTTP_ALLOWLIST = ["127.0.0.1"]
    response = get(f"http://127.0.0.1:{server.port}/")
    assert response.status_code == 200
    assert response.content == f"hello 127.0.0.1:{server.port}".encode()


def test_allow_listed_host_name_connects_to_the_checked_address_and_keeps_the_host(server, settings):
    settings.SAFE_HTTP_ALLOWLIST = ["localhost"]
    response = get(f"http://localhost:{server.port}/")
    assert response.content == f"hello localhost:{server.port}".encode()


@pytest.mark.django_db(transaction=True)  # the check runs in a worker thread: it sees committed rows
def test_allow_rule_rows_apply_although_the_client_is_async(server, allow_nothing):
    url = f"http://localhost:{server.port}/"
    with pytest.raises(UnsafeURLError):
        get(url)
    OutboundAllowRule.objects.create(pattern="127.0.0.0/8", description="local MCP servers")
    assert get(url).status_code == 200


@pytest.mark.parametrize("path", ["/big", "/big-unsized"])
def test_response_larger_than_max_response_bytes(server, settings, path):
    settings.SAFE_HTTP_ALLOWLIST = ["127.0.0.1"]
    with pytest.raises(ResponseTooLarge):
        get(f"http://127.0.0.1:{server.port}{path}", max_response_bytes=len(BIG) - 1)
    assert get(f"http://127.0.0.1:{server.port}{path}", max_response_bytes=len(BIG)).content == BIG


def test_connection_refused_is_an_httpx2_connect_error(settings):
    settings.SAFE_HTTP_ALLOWLIST = ["127.0.0.1"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(httpx2.ConnectError):
            get(f"http://127.0.0.1:{port}/")


def test_safe_async_client_refuses_options_that_bypass_the_guard():
    for option in ("transport", "mounts", "proxy"):
        with pytest.raises(TypeError, match=option):
            safe_async_client(**{option: None})
    assert isinstance(safe_async_client()._transport, SafeAsyncTransport)
