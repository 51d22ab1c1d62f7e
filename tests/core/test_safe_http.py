"""The safe outbound HTTP client against real servers on the loopback interface."""

import contextlib
import datetime
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agentmesh.core.models import OutboundAllowRule
from agentmesh.core.safe_http import (
    ResponseTooLarge,
    SafeHTTPError,
    SafeTransport,
    TooManyRedirects,
    UnsafeURLError,
    UpstreamError,
    UpstreamTimeout,
    check_url,
    clear_allow_rule_cache,
    is_allowed_by_admin,
    safe_client,
    safe_request,
)

BIG = b"x" * 2000
SLOW_SECONDS = 0.6


class CountingServer(ThreadingHTTPServer):
    """Counts accepted connections, so a test can prove a refused URL never reached it."""

    def __init__(self, host: str) -> None:
        super().__init__((host, 0), Handler)
        self.connections = 0
        self._lock = threading.Lock()

    def process_request(self, request, client_address) -> None:
        with self._lock:
            self.connections += 1
        super().process_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        pass  # the slow handler writes to clients that already gave up

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format, *args) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, length: bool = True) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path == "/":
            self._send(200, b"hello " + self.headers["Host"].encode())
        elif parts.path == "/redirect":
            self._send(302, headers={"Location": query["to"][0]})
        elif parts.path == "/loop":
            self._send(302, headers={"Location": "/loop"})
        elif parts.path == "/big":
            self._send(200, BIG)
        elif parts.path == "/big-unsized":  # HTTP/1.0 without Content-Length: body ends at close
            self._send(200, BIG, length=False)
        elif parts.path == "/slow":
            time.sleep(SLOW_SECONDS)
            self._send(200, b"late")
        else:
            self._send(404)


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


@pytest.fixture(autouse=True)
def _fresh_rules():
    clear_allow_rule_cache()
    yield
    clear_allow_rule_cache()  # rows rolled back with the test transaction send no post_delete


@pytest.fixture
def allow_nothing(settings):
    settings.SAFE_HTTP_ALLOWLIST = []


@pytest.fixture
def allow_loopback_one(settings):
    settings.SAFE_HTTP_ALLOWLIST = ["127.0.0.1"]


REFUSED = [
    "http://127.0.0.1:{port}/",
    "http://localhost:{port}/",
    "http://[::1]:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://2130706433:{port}/",
    "http://0x7f000001:{port}/",
    "http://127.1:{port}/",
    "http://0.0.0.0:{port}/",
    "http://10.0.0.1:{port}/",
    "http://169.254.169.254:{port}/",
    "http://[fd00::1]:{port}/",
    "file:///etc/passwd",
    "gopher://x",
]


@pytest.mark.usefixtures("allow_nothing")
@pytest.mark.parametrize("template", REFUSED)
@pytest.mark.parametrize("resolve", [True, False])
def test_check_url_refuses_with_empty_allow_list(server, template, resolve):
    url = template.format(port=server.server_address[1])
    with pytest.raises(UnsafeURLError) as info:
        check_url(url, resolve=resolve)
    assert info.value.url == url
    assert str(info.value)


@pytest.mark.usefixtures("allow_nothing")
@pytest.mark.parametrize("template", REFUSED)
def test_safe_request_refuses_with_empty_allow_list_and_sends_nothing(server, template):
    url = template.format(port=server.server_address[1])
    before = server.connections
    with pytest.raises(UnsafeURLError) as info:
        safe_request("GET", url, timeout=0.5)
    assert info.value.url == url
    assert server.connections == before


@pytest.mark.usefixtures("allow_nothing")
@pytest.mark.parametrize("template", REFUSED)
def test_transport_refuses_with_empty_allow_list_and_sends_nothing(server, template):
    """What the LLM SDKs get with httpx.Client(transport=SafeTransport())."""
    url = template.format(port=server.server_address[1])
    before = server.connections
    with httpx.Client(transport=SafeTransport(), timeout=0.5) as client, pytest.raises(UnsafeURLError):
        client.get(url)
    assert server.connections == before


@pytest.mark.usefixtures("allow_nothing")
@pytest.mark.parametrize(
    ("host", "spelled"),
    [("2130706433", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("127.1", "127.0.0.1"), ("0", "0.0.0.0")],
)
def test_legacy_ipv4_spellings_are_named_in_the_message(host, spelled):
    with pytest.raises(
        UnsafeURLError, match=re.escape(f"legacy numeric spelling of the IPv4 address {spelled}")
    ):
        check_url(f"http://{host}/", resolve=False)


@pytest.mark.usefixtures("allow_nothing")
@pytest.mark.parametrize("url", ["http://0177.0.0.1/", "http://127.000.000.001/", "http://exa mple.com/"])
def test_urls_httpx_cannot_parse_are_unsafe_url_errors(server, url):
    with pytest.raises(UnsafeURLError):
        check_url(url)
    with pytest.raises(UnsafeURLError):
        safe_request("GET", url)


@pytest.mark.usefixtures("allow_nothing")
@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("[64:ff9b::7f00:1]", "loopback"),  # NAT64 of 127.0.0.1
        ("[2002:7f00:1::1]", "loopback"),  # 6to4 of 127.0.0.1
        ("[::ffff:a00:1]", "private"),  # IPv4-mapped 10.0.0.1
        ("[::127.0.0.1]", "reserved"),  # deprecated IPv4-compatible form
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.100.100.200", "metadata"),
        ("[fd00:ec2::254]", "metadata"),
        ("224.0.0.1", "multicast"),
        ("[ff02::1]", "multicast"),
        ("192.0.2.1", "not publicly routable"),
        ("[fe80::1]", "link-local"),
        ("[fec0::1]", "site-local"),
    ],
)
def test_special_addresses_are_refused(address, reason):
    with pytest.raises(UnsafeURLError, match=reason):
        check_url(f"http://{address}/", resolve=False)


@pytest.mark.usefixtures("allow_nothing")
@pytest.mark.parametrize(
    "url",
    [
        "https://llm.example.com/v1",
        "http://8.8.8.8/",
        "http://[2606:4700::1]/",
        "http://[::ffff:8.8.8.8]/",
        "http://[64:ff9b::808:808]/",
    ],
)
def test_check_url_without_resolving_accepts_public_urls(url):
    check_url(url, resolve=False)


def test_metadata_address_is_refused_even_when_allow_listed(settings):
    settings.SAFE_HTTP_ALLOWLIST = ["169.254.0.0/16"]
    check_url("http://169.254.1.1/", resolve=False)
    with pytest.raises(UnsafeURLError, match="metadata"):
        check_url("http://169.254.169.254/latest/meta-data/", resolve=False)


def test_is_allowed_by_admin_matches_host_names_and_networks(settings):
    settings.SAFE_HTTP_ALLOWLIST = ["ollama.internal", "*.corp.example", "10.1.0.0/16", " ", "fd12::/16"]
    ip = ipaddress.ip_address
    assert is_allowed_by_admin("Ollama.Internal.", ip("10.9.9.9"))
    assert is_allowed_by_admin("a.b.corp.example", ip("10.9.9.9"))
    assert not is_allowed_by_admin("corp.example", ip("10.9.9.9"))
    assert not is_allowed_by_admin("evilcorp.example", ip("10.9.9.9"))
    assert is_allowed_by_admin("anything", ip("10.1.2.3"))
    assert is_allowed_by_admin("anything", ip("fd12::1"))
    assert not is_allowed_by_admin("anything", ip("10.2.0.1"))


# --- allow-list -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("allow_loopback_one")
def test_allow_listed_address_gets_the_response(server):
    check_url(server.url + "/")
    response = safe_request("GET", server.url + "/")
    assert response.status_code == 200
    host, port = server.server_address[:2]
    assert response.content == f"hello {host}:{port}".encode()


def test_allow_listed_host_name_gets_the_response(server, settings):
    settings.SAFE_HTTP_ALLOWLIST = ["localhost"]
    port = server.server_address[1]
    response = safe_request("GET", f"http://localhost:{port}/")
    assert response.text == f"hello localhost:{port}"  # Host header keeps the name, not the IP


def test_allow_rule_row_allows_a_network(db, server, second_server, allow_nothing):
    with pytest.raises(UnsafeURLError):
        safe_request("GET", second_server.url + "/")
    OutboundAllowRule.objects.create(pattern="127.0.0.0/8", description="local model servers")
    assert safe_request("GET", second_server.url + "/").status_code == 200
    assert safe_request("GET", server.url + "/").status_code == 200


def test_disabled_and_deleted_allow_rules_do_not_allow(db, server, allow_nothing):
    rule = OutboundAllowRule.objects.create(pattern="127.0.0.0/8", enabled=False)
    before = server.connections
    with pytest.raises(UnsafeURLError):
        safe_request("GET", server.url + "/")
    rule.enabled = True
    rule.save()
    assert safe_request("GET", server.url + "/").status_code == 200
    rule.delete()
    with pytest.raises(UnsafeURLError):
        safe_request("GET", server.url + "/")
    assert server.connections == before + 1


# --- redirects --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("allow_loopback_one")
def test_redirect_to_a_forbidden_host_is_refused(server, second_server):
    target = second_server.url + "/"
    before = second_server.connections
    with pytest.raises(UnsafeURLError, match=re.escape("127.0.0.2")) as info:
        safe_request("GET", f"{server.url}/redirect?to={target}")
    assert info.value.url == target
    assert str(info.value).startswith(f"{server.url}/redirect?to={target} redirected to {target}")
    with safe_client() as client, pytest.raises(UnsafeURLError) as info:
        client.get(f"{server.url}/redirect?to={target}")
    assert info.value.url == target
    assert second_server.connections == before


@pytest.mark.usefixtures("allow_loopback_one")
@pytest.mark.parametrize("target", ["file:///etc/passwd", "http://2130706433/", "http://0177.0.0.1/"])
def test_redirect_to_an_unsafe_url_is_refused(server, target):
    with pytest.raises(UnsafeURLError):
        safe_request("GET", f"{server.url}/redirect?to={target}")


@pytest.mark.usefixtures("allow_loopback_one")
def test_redirect_between_allowed_paths_is_followed(server):
    response = safe_request("GET", f"{server.url}/redirect?to=/big")
    assert response.content == BIG
    assert [r.status_code for r in response.history] == [302]


@pytest.mark.usefixtures("allow_loopback_one")
def test_redirects_are_not_followed_when_disabled(server):
    response = safe_request("GET", f"{server.url}/redirect?to=/big", follow_redirects=False)
    assert response.status_code == 302


def test_too_many_redirects(server, settings):
    settings.SAFE_HTTP_ALLOWLIST = ["127.0.0.1"]
    settings.SAFE_HTTP_MAX_REDIRECTS = 3
    before = server.connections
    with pytest.raises(TooManyRedirects):
        safe_request("GET", server.url + "/loop")
    assert server.connections - before <= 4  # the first request and three redirects at most


# --- size and time caps ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("allow_loopback_one")
@pytest.mark.parametrize("path", ["/big", "/big-unsized"])
def test_response_larger_than_max_bytes(server, path):
    with pytest.raises(ResponseTooLarge):
        safe_request("GET", server.url + path, max_bytes=1000)
    assert safe_request("GET", server.url + path, max_bytes=len(BIG)).content == BIG


def test_default_size_cap_comes_from_settings(server, settings):
    settings.SAFE_HTTP_ALLOWLIST = ["127.0.0.1"]
    settings.SAFE_HTTP_MAX_RESPONSE_BYTES = 100
    with pytest.raises(ResponseTooLarge):
        safe_request("GET", server.url + "/big")


@pytest.mark.usefixtures("allow_loopback_one")
def test_slow_server_times_out_with_a_safe_http_error(server):
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as info:
        safe_request("GET", server.url + "/slow", timeout=0.2)
    assert time.monotonic() - started < SLOW_SECONDS
    assert isinstance(info.value, SafeHTTPError)
    assert not isinstance(info.value, httpx.HTTPError)


def test_read_timeout_comes_from_settings(server, settings):
    settings.SAFE_HTTP_ALLOWLIST = ["127.0.0.1"]
    settings.SAFE_HTTP_READ_TIMEOUT = 0.2
    with pytest.raises(UpstreamTimeout):
        safe_request("GET", server.url + "/slow")


@pytest.mark.usefixtures("allow_loopback_one")
def test_connection_refused_is_an_upstream_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UpstreamError):
        safe_request("GET", f"http://127.0.0.1:{port}/", timeout=1)


def test_safe_client_refuses_options_that_bypass_the_guard():
    for option in ("transport", "mounts", "proxy"):
        with pytest.raises(TypeError):
            safe_client(**{option: None})


# --- TLS ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory) -> Iterator[tuple[CountingServer, ssl.SSLContext, list[str]]]:
    """An HTTPS server on 127.0.0.1 whose certificate names only `localhost`; records the SNI it sees."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    seen_sni: list[str] = []
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    server_context.sni_callback = lambda _sock, sni, _ctx: seen_sni.append(sni)
    with serving("127.0.0.1") as srv:
        srv.socket = server_context.wrap_socket(srv.socket, server_side=True)
        yield srv, ssl.create_default_context(cafile=str(cert_file)), seen_sni


def test_https_keeps_the_host_name_for_sni_and_certificate(tls_server, settings):
    srv, client_context, seen_sni = tls_server
    port = srv.server_address[1]
    settings.SAFE_HTTP_ALLOWLIST = ["localhost"]
    with safe_client(verify=client_context) as client:
        response = client.get(f"https://localhost:{port}/")
    assert response.text == f"hello localhost:{port}"
    assert seen_sni[-1] == "localhost"
    settings.SAFE_HTTP_ALLOWLIST = ["127.0.0.1"]
    with safe_client(verify=client_context) as client, pytest.raises(httpx.ConnectError, match="mismatch"):
        client.get(f"https://127.0.0.1:{port}/")  # the certificate does not name the IP
