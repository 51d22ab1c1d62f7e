"""The one outbound HTTP client of the product, with its SSRF guard.

Every outbound call (model endpoints, HTTP tools, OpenAPI/MCP import, webhooks, notifications) goes
through `safe_request`, `safe_client` or an `httpx.Client(transport=SafeTransport())`; the MCP SDK,
which speaks httpx2 (a fork of httpx), goes through `safe_async_client` / `SafeAsyncTransport`.

The guard sits in the network layer of the transport: a connection resolves the host once, refuses it
unless every address is public (or allow-listed by an administrator) and connects to exactly the checked
address. The URL itself is never rewritten, so the Host header, TLS SNI and certificate check keep the
original host name, and because httpx calls the transport for every hop, each redirect is checked too.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import socket
import time
from typing import Any

import anyio
import anyio.to_thread
import httpcore
import httpcore2
import httpx
import httpx2
from django.conf import settings
from django.db.models.signals import post_delete, post_save

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = frozenset({"http", "https"})
RULE_CACHE_SECONDS = 30.0

# Refused even when an allow-list entry covers them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_PRIVATE = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
_LOOPBACK_V4 = ipaddress.IPv4Address("127.0.0.1")
# Host names that inet_aton() may read as an IPv4 address: 2130706433, 0x7f000001, 0177.0.0.1, 127.1.
_NUMERIC_HOST = re.compile(r"[0-9a-fx.]+", re.IGNORECASE)
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")


class SafeHTTPError(Exception):
    """Base of every error the safe client raises; `url` names the request."""

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class UnsafeURLError(SafeHTTPError, ValueError):
    """The URL, or an address its host resolves to, may not be contacted."""


class ResponseTooLarge(SafeHTTPError):
    """The response body is larger than the allowed maximum."""


class UpstreamError(SafeHTTPError):
    """The destination could not be reached or did not answer properly."""


class UpstreamTimeout(UpstreamError):
    """Connecting to or reading from the destination took too long."""


class TooManyRedirects(UpstreamError):
    """The destination redirected more often than SAFE_HTTP_MAX_REDIRECTS allows."""


# --- Admin allow-list ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _parse_pattern(pattern: str) -> str | IPNetwork | None:
    pattern = pattern.strip().lower().rstrip(".")
    if not pattern:
        return None
    try:
        return ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return pattern


class _RuleCache:
    """Enabled OutboundAllowRule patterns, kept in-process for RULE_CACHE_SECONDS."""

    def __init__(self) -> None:
        self._expires = 0.0
        self._patterns: tuple[str, ...] = ()

    def clear(self) -> None:
        self._expires = 0.0

    def patterns(self) -> tuple[str, ...]:
        if time.monotonic() < self._expires:
            return self._patterns
        try:
            from agentmesh.core.models import OutboundAllowRule

            patterns = tuple(OutboundAllowRule.objects.filter(enabled=True).values_list("pattern", flat=True))
        except Exception as exc:
            # No database (down, not migrated, async context, test without db): the setting still applies.
            logger.warning("Outbound allow rules unavailable (%s); using SAFE_HTTP_ALLOWLIST only.", exc)
            return ()
        self._patterns, self._expires = patterns, time.monotonic() + RULE_CACHE_SECONDS
        return patterns


_rules = _RuleCache()


def clear_allow_rule_cache(**_signal_kwargs: Any) -> None:
    """Forget the cached OutboundAllowRule rows (also a post_save/post_delete receiver)."""
    _rules.clear()


post_save.connect(
    clear_allow_rule_cache, sender="core.OutboundAllowRule", dispatch_uid="safe_http_rules_save"
)
post_delete.connect(
    clear_allow_rule_cache, sender="core.OutboundAllowRule", dispatch_uid="safe_http_rules_delete"
)


def _matches(patterns: tuple[str, ...] | list[str], host: str, ip: IPAddress) -> bool:
    for raw in patterns:
        entry = _parse_pattern(raw)
        if entry is None:
            continue
        if isinstance(entry, str):
            if host == entry or (entry.startswith("*.") and host.endswith(entry[1:])):
                return True
        elif ip.version == entry.version and ip in entry:
            return True
    return False


def is_allowed_by_admin(host: str, ip: IPAddress) -> bool:
    """Whether an administrator allows `ip` (reached via the name `host`) despite the SSRF rules.

    Host entries (exact, or `*.suffix`) match the URL host; IP and CIDR entries match the address.
    Sources: settings.SAFE_HTTP_ALLOWLIST, then enabled OutboundAllowRule rows.
    """
    host = host.strip().lower().rstrip(".")
    return _matches(settings.SAFE_HTTP_ALLOWLIST, host, ip) or _matches(_rules.patterns(), host, ip)


# --- Address checks -----------------------------------------------------------------------------


def _addresses_to_check(ip: IPAddress) -> list[IPAddress]:
    """The addresses a connection to `ip` really reaches: IPv4 embedded in IPv6 forms count."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return [ip.ipv4_mapped]
        if ip in _NAT64:
            return [ipaddress.IPv4Address(ip.packed[-4:])]
        if ip.sixtofour is not None:
            return [ip, ip.sixtofour]
    return [ip]


def _never_allowed_reason(ip: IPAddress) -> str | None:
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    return None


def _non_public_reason(ip: IPAddress) -> str | None:
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip in _CGNAT:
        return "a carrier-grade NAT address"
    if any(ip in net for net in _PRIVATE if net.version == ip.version):
        return "a private address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "a site-local address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "a special-purpose address that is not publicly routable"
    return None


def _check_address(host: str, ip: IPAddress, *, literal: bool) -> None:
    for addr in _addresses_to_check(ip):
        reason = _never_allowed_reason(addr)
        hint = ""
        if reason is None:
            reason = _non_public_reason(addr)
            if reason is None or is_allowed_by_admin(host, addr):
                continue
            hint = " An administrator can allow it with an outbound allow rule."
        shown = str(ip) if addr == ip else f"{ip} (which reaches {addr})"
        if literal:
            raise UnsafeURLError(f"Refused outbound request to {shown}: it is {reason}.{hint}")
        raise UnsafeURLError(f"Refused outbound request to {host}: it resolves to {shown}, {reason}.{hint}")


def _literal_address(host: str) -> IPAddress | None:
    """The IP address `host` spells, or None for a host name. Legacy IPv4 spellings are refused."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        try:
            packed = socket.inet_aton(host)
        except OSError:
            return None
        raise UnsafeURLError(
            f"Refused outbound request to {host}: it is a legacy numeric spelling of the IPv4 address "
            f"{ipaddress.IPv4Address(packed)}. Write IPv4 addresses as four decimal numbers."
        )
    return None


def _is_localhost_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def _host_of(url: httpx.URL) -> str:
    return url.raw_host.decode("ascii").rstrip(".").lower()


def _check_static(url: httpx.URL) -> tuple[str, IPAddress | None]:
    """Checks that need no DNS: scheme, host present, literal addresses. Returns (host, literal IP)."""
    if url.scheme not in ALLOWED_SCHEMES:
        scheme = f"{url.scheme}://" if url.scheme else "a URL without scheme"
        raise UnsafeURLError(f"Only http:// and https:// URLs may be requested, not {scheme}.")
    host = _host_of(url)
    if not host:
        raise UnsafeURLError("The URL has no host.")
    ip = _literal_address(host)
    if ip is not None:
        _check_address(host, ip, literal=True)
    elif not _HOST_NAME.fullmatch(host):
        raise UnsafeURLError(f"{host!r} is not a valid host name.")
    return host, ip


def _resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in resolver order, without duplicates."""
    found: list[IPAddress] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        ip = ipaddress.ip_address(sockaddr[0])
        if ip not in found:
            found.append(ip)
    return found


def _parse(url: str) -> httpx.URL:
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UnsafeURLError(f"Invalid URL: {exc}", url=str(url)) from None


def check_url(url: str, *, resolve: bool = True) -> None:
    """Validate a configured URL on save: scheme http/https only, host present, and (when resolve) every
    address the host resolves to is public or allow-listed. Literal IPs are always checked.
    Raises UnsafeURLError."""
    parsed = _parse(url)
    try:
        host, ip = _check_static(parsed)
        if ip is not None:
            return
        if not resolve:
            if _is_localhost_name(host):
                _check_address(host, _LOOPBACK_V4, literal=False)
            return
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            addresses = _resolve(host, port)
        except (socket.gaierror, UnicodeError) as exc:
            raise UnsafeURLError(f"The host {host} could not be resolved ({exc}).") from None
        for address in addresses:
            _check_address(host, address, literal=False)
    except UnsafeURLError as exc:
        exc.url = url
        raise


# --- Transport ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _cached_ssl_context(library, verify: Any, cert: Any, trust_env: bool):
    return library.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)


def _ssl_context(library, verify: Any, cert: Any, trust_env: bool):
    """Loading the CA bundle costs ~30 ms: build each distinct context once and share it
    (SSLContext is safe to share between connections and threads)."""
    try:
        return _cached_ssl_context(library, verify, cert, trust_env)
    except TypeError:  # an unhashable verify/cert (e.g. an SSLContext given by the caller)
        return library.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)


def _guarded_pool(
    pool_class,
    backend,
    library,
    *,
    verify: Any = True,
    cert: Any = None,
    trust_env: bool = True,
    http1: bool = True,
    http2: bool = False,
    limits: Any = None,
    local_address: str | None = None,
    retries: int = 0,
    socket_options: Any = None,
):
    """A connection pool (httpcore or httpcore2, sync or async) that connects only through
    `backend`, the guarded network backend; the options are httpx transport options."""
    limits = limits or library.Limits(max_connections=100, max_keepalive_connections=20)
    return pool_class(
        ssl_context=_ssl_context(library, verify, cert, trust_env),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=http1,
        http2=http2,
        local_address=local_address,
        retries=retries,
        socket_options=socket_options,
        network_backend=backend,
    )


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves once, checks every address, connects only to a checked address."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = _resolve(host, port)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore.ConnectError(f"Could not resolve {host}: {exc}") from exc
        for address in addresses:
            _check_address(host, address, literal=False)
        error: Exception = httpcore.ConnectError(f"No address found for {host}")
        for address in addresses:
            try:
                return super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error


class SafeTransport(httpx.HTTPTransport):
    """httpx transport that resolves the host ONCE, refuses forbidden addresses, and connects to the
    checked IP (Host header and TLS SNI/certificate host name stay the original host). Because it sits
    in the transport, every redirect hop followed by an httpx.Client is re-checked. (The openai,
    anthropic and mcp SDKs use the httpx2 fork: see SafeTransport2 and SafeAsyncTransport.)

    Proxies and Unix sockets are not supported: both would bypass the address check.
    """

    def __init__(self, **options: Any) -> None:
        # Not calling super().__init__: it would build a pool with the default network backend.
        self._pool = _guarded_pool(httpcore.ConnectionPool, _GuardedBackend(), httpx, **options)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            _check_static(request.url)
            return super().handle_request(request)
        except UnsafeURLError as exc:
            exc.url = exc.url or str(request.url)
            raise


# --- Client and one-shot request ----------------------------------------------------------------

_TRANSPORT_OPTIONS = ("verify", "cert", "http1", "http2", "limits")
_FORBIDDEN_CLIENT_OPTIONS = ("transport", "mounts", "proxy")


def _timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    connect = settings.SAFE_HTTP_CONNECT_TIMEOUT
    read = settings.SAFE_HTTP_READ_TIMEOUT if timeout is None else timeout
    return httpx.Timeout(connect=min(connect, read), read=read, write=read, pool=connect)


def safe_client(
    *, timeout: float | httpx.Timeout | None = None, follow_redirects: bool = True, **kwargs: Any
) -> httpx.Client:
    """httpx.Client using SafeTransport, connect/read timeouts from settings, max_redirects from settings.

    `timeout` overrides the read/write timeout (and caps the connect timeout). Other keyword arguments go
    to httpx.Client; verify/cert/http1/http2/limits configure the transport.
    """
    for name in _FORBIDDEN_CLIENT_OPTIONS:
        if name in kwargs:
            raise TypeError(f"safe_client() does not accept {name!r}: it would bypass the SSRF guard.")
    transport_options = {name: kwargs.pop(name) for name in _TRANSPORT_OPTIONS if name in kwargs}
    kwargs.setdefault("max_redirects", settings.SAFE_HTTP_MAX_REDIRECTS)
    return httpx.Client(
        transport=SafeTransport(**transport_options),
        timeout=_timeout(timeout),
        follow_redirects=follow_redirects,
        **kwargs,
    )


def _read_capped(response: httpx.Response, max_bytes: int, url: str) -> None:
    too_large = ResponseTooLarge(f"The response from {url} is larger than {max_bytes} bytes.", url=url)
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    # httpx has no public way to attach a body read by hand; this is what Response.read() sets.
    response._content = b"".join(chunks)


def safe_request(
    method: str,
    url: str,
    *,
    max_bytes: int | None = None,
    timeout: float | httpx.Timeout | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """One request through safe_client. The body is streamed and capped at max_bytes (default
    settings.SAFE_HTTP_MAX_RESPONSE_BYTES); the returned response has its content read.

    Keyword arguments are httpx request arguments (params, headers, json, content, follow_redirects, ...).
    Raises only SafeHTTPError subclasses: UnsafeURLError, ResponseTooLarge, UpstreamTimeout,
    TooManyRedirects, UpstreamError. HTTP error statuses are returned, not raised.
    """
    limit = settings.SAFE_HTTP_MAX_RESPONSE_BYTES if max_bytes is None else max_bytes
    check_url(url, resolve=False)
    try:
        with safe_client(timeout=timeout) as client, client.stream(method, url, **kwargs) as response:
            _read_capped(response, limit, url)
    except UnsafeURLError as exc:
        if exc.url == url:
            raise
        raise UnsafeURLError(f"{url} redirected to {exc.url}, which was refused. {exc}", url=exc.url) from exc
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(f"The request to {url} timed out ({type(exc).__name__}).", url=url) from exc
    except httpx.TooManyRedirects as exc:
        raise TooManyRedirects(f"The request to {url} was redirected too many times.", url=url) from exc
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise UnsafeURLError(f"Refused outbound request to {url}: {exc}", url=url) from exc
    except httpx.RemoteProtocolError as exc:
        if str(exc).startswith("Invalid URL in location header"):
            raise UnsafeURLError(f"{url} redirected to an invalid URL: {exc}", url=url) from exc
        raise UpstreamError(f"The request to {url} failed: {exc}", url=url) from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(f"The request to {url} failed: {exc}", url=url) from exc
    return response


# --- Async client for the MCP SDK (httpx2) ------------------------------------------------------
#
# The official MCP SDK (mcp 2.x) does its HTTP with httpx2/httpcore2, pydantic's fork of httpx/httpcore,
# and its Streamable HTTP client only takes an `httpx2.AsyncClient`: an httpx AsyncClient or transport
# does not plug in. The fork keeps httpcore's pluggable network backend, so the guard is the one above,
# not a weaker variant: the backend resolves once, checks every address and connects to a checked IP.
# (A check_url(resolve=True) before handing the URL to the SDK would leave a DNS-rebinding window,
# since the library would resolve the name again when it connects.)


def _closing_new_db_connections(fn: Any, *args: Any) -> Any:
    """Call fn(*args), then close the database connections the call opened (the admin allow rules are
    read from the database). For worker threads, which come and go with their event loop."""
    from django.db import connections

    already_open = {alias for alias in connections if connections[alias].connection is not None}
    try:
        return fn(*args)
    finally:
        for alias in connections:
            if alias not in already_open:
                connections[alias].close()


async def _off_loop(fn: Any, *args: Any) -> Any:
    """Run a check in a worker thread: getaddrinfo blocks, and Django refuses database queries (the allow
    rules) on a thread that runs an event loop."""
    return await anyio.to_thread.run_sync(_closing_new_db_connections, fn, *args, abandon_on_cancel=True)


def _resolve_checked(host: str, port: int) -> list[IPAddress]:
    addresses = _resolve(host, port)
    for address in addresses:
        _check_address(host, address, literal=False)
    return addresses


class _GuardedAsyncBackend(httpcore2.AnyIOBackend):
    """Async counterpart of _GuardedBackend (asyncio or trio, through anyio)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore2.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                addresses = await _off_loop(_resolve_checked, host, port)
        except TimeoutError as exc:
            raise httpcore2.ConnectTimeout(f"Resolving {host} timed out") from exc
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore2.ConnectError(f"Could not resolve {host}: {exc}") from exc
        error: Exception = httpcore2.ConnectError(f"No address found for {host}")
        for address in addresses:
            try:
                return await super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                error = exc
        raise error


class _CappedAsyncStream(httpx2.AsyncByteStream):
    """A response body that raises ResponseTooLarge once more than `limit` bytes arrived."""

    def __init__(self, stream: httpx2.AsyncByteStream, limit: int, url: str) -> None:
        self._stream, self._limit, self._url = stream, limit, url

    async def __aiter__(self):
        size = 0
        async for chunk in self._stream:
            size += len(chunk)
            if size > self._limit:
                raise ResponseTooLarge(
                    f"The response from {self._url} is larger than {self._limit} bytes.", url=self._url
                )
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class SafeAsyncTransport(httpx2.AsyncHTTPTransport):
    """httpx2 async transport with the guard of SafeTransport: static URL checks on every request (so on
    every redirect hop), resolve once, refuse forbidden addresses, connect to the checked IP. For
    `httpx2.AsyncClient`, the client the MCP SDK requires.

    `max_response_bytes` caps each response body (bytes on the wire) with ResponseTooLarge.
    Proxies and Unix sockets are not supported: both would bypass the address check.
    """

    def __init__(self, *, max_response_bytes: int | None = None, **options: Any) -> None:
        # Not calling super().__init__: it would build a pool with the default network backend.
        self._pool = _guarded_pool(httpcore2.AsyncConnectionPool, _GuardedAsyncBackend(), httpx2, **options)
        self._max_response_bytes = max_response_bytes

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = str(request.url)
        try:
            # httpx2.URL has the attributes of httpx.URL that _check_static reads.
            await _off_loop(_check_static, request.url)
            response = await super().handle_async_request(request)
        except UnsafeURLError as exc:
            exc.url = exc.url or url
            raise
        limit = self._max_response_bytes
        if limit is not None:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                await response.aclose()
                raise ResponseTooLarge(f"The response from {url} is larger than {limit} bytes.", url=url)
            response.stream = _CappedAsyncStream(response.stream, limit, url)
        return response


def _async_timeout(timeout: float | httpx2.Timeout | None) -> httpx2.Timeout:
    if isinstance(timeout, httpx2.Timeout):
        return timeout
    connect = settings.SAFE_HTTP_CONNECT_TIMEOUT
    read = settings.SAFE_HTTP_READ_TIMEOUT if timeout is None else timeout
    return httpx2.Timeout(connect=min(connect, read), read=read, write=read, pool=connect)


def safe_async_client(
    *,
    timeout: float | httpx2.Timeout | None = None,
    follow_redirects: bool = True,
    max_response_bytes: int | None = None,
    **kwargs: Any,
) -> httpx2.AsyncClient:
    """httpx2.AsyncClient using SafeAsyncTransport; timeouts and max_redirects as in safe_client.

    Pass it to the MCP SDK (`streamable_http_client(url, http_client=...)`). Other keyword arguments go
    to httpx2.AsyncClient (headers, event_hooks, ...); verify/cert/http1/http2/limits configure the
    transport. Errors: UnsafeURLError and ResponseTooLarge as raised here, httpx2 exceptions otherwise.
    """
    for name in _FORBIDDEN_CLIENT_OPTIONS:
        if name in kwargs:
            raise TypeError(f"safe_async_client() does not accept {name!r}: it would bypass the SSRF guard.")
    transport_options = {name: kwargs.pop(name) for name in _TRANSPORT_OPTIONS if name in kwargs}
    kwargs.setdefault("max_redirects", settings.SAFE_HTTP_MAX_REDIRECTS)
    return httpx2.AsyncClient(
        transport=SafeAsyncTransport(max_response_bytes=max_response_bytes, **transport_options),
        timeout=_async_timeout(timeout),
        follow_redirects=follow_redirects,
        **kwargs,
    )


# --- Sync client for the openai/anthropic SDKs (httpx2) -----------------------------------------
#
# The official openai (3.x) and anthropic (2.x) SDKs do their HTTP with httpx2 as well and take an
# `httpx2.Client` as `http_client` (the anthropic SDK accepts nothing else). This is the sync counterpart
# of the async guard above and of SafeTransport: same checks, same resolve-once-and-connect-to-the-checked-
# address backend, so an SDK call cannot reach an address the rest of the product may not.


class _GuardedBackend2(httpcore2.SyncBackend):
    """_GuardedBackend for httpcore2: resolves once, checks every address, connects only to a checked one."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore2.NetworkStream:
        try:
            addresses = _resolve(host, port)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore2.ConnectError(f"Could not resolve {host}: {exc}") from exc
        for address in addresses:
            _check_address(host, address, literal=False)
        error: Exception = httpcore2.ConnectError(f"No address found for {host}")
        for address in addresses:
            try:
                return super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                error = exc
        raise error


class _CappedStream(httpx2.SyncByteStream):
    """A response body that raises ResponseTooLarge once more than `limit` bytes arrived."""

    def __init__(self, stream: httpx2.SyncByteStream, limit: int, url: str) -> None:
        self._stream, self._limit, self._url = stream, limit, url

    def __iter__(self):
        size = 0
        for chunk in self._stream:
            size += len(chunk)
            if size > self._limit:
                raise ResponseTooLarge(
                    f"The response from {self._url} is larger than {self._limit} bytes.", url=self._url
                )
            yield chunk

    def close(self) -> None:
        self._stream.close()


class SafeTransport2(httpx2.HTTPTransport):
    """httpx2 (sync) transport with the guard of SafeTransport: static URL checks on every request (so on
    every redirect hop), resolve once, refuse forbidden addresses, connect to the checked IP (Host header
    and TLS SNI/certificate host name stay the original host). For the `httpx2.Client` the openai and
    anthropic SDKs take as `http_client`.

    `max_response_bytes` caps each response body (bytes on the wire) with ResponseTooLarge.
    Proxies and Unix sockets are not supported: both would bypass the address check.
    """

    def __init__(self, *, max_response_bytes: int | None = None, **options: Any) -> None:
        # Not calling super().__init__: it would build a pool with the default network backend.
        self._pool = _guarded_pool(httpcore2.ConnectionPool, _GuardedBackend2(), httpx2, **options)
        self._max_response_bytes = max_response_bytes

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        url = str(request.url)
        try:
            # httpx2.URL has the attributes of httpx.URL that _check_static reads.
            _check_static(request.url)
            response = super().handle_request(request)
        except UnsafeURLError as exc:
            exc.url = exc.url or url
            raise
        limit = self._max_response_bytes
        if limit is not None:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                response.close()
                raise ResponseTooLarge(f"The response from {url} is larger than {limit} bytes.", url=url)
            response.stream = _CappedStream(response.stream, limit, url)
        return response


def safe_httpx2_client(
    *,
    timeout: float | httpx2.Timeout | None = None,
    follow_redirects: bool = True,
    max_response_bytes: int | None = None,
    **kwargs: Any,
) -> httpx2.Client:
    """httpx2.Client using SafeTransport2; timeouts and max_redirects as in safe_client.

    Pass it to the SDKs: `OpenAI(..., http_client=safe_httpx2_client(...))`,
    `Anthropic(..., http_client=...)`. Other keyword arguments go to httpx2.Client (headers, event_hooks,
    ...); verify/cert/http1/http2/limits configure the transport. Errors: UnsafeURLError and
    ResponseTooLarge as raised here, httpx2 exceptions otherwise.
    """
    for name in _FORBIDDEN_CLIENT_OPTIONS:
        if name in kwargs:
            raise TypeError(f"safe_httpx2_client() does not accept {name!r}: it would bypass the SSRF guard.")
    transport_options = {name: kwargs.pop(name) for name in _TRANSPORT_OPTIONS if name in kwargs}
    kwargs.setdefault("max_redirects", settings.SAFE_HTTP_MAX_REDIRECTS)
    return httpx2.Client(
        transport=SafeTransport2(max_response_bytes=max_response_bytes, **transport_options),
        timeout=_async_timeout(timeout),  # an httpx2.Timeout, whether the client is sync or async
        follow_redirects=follow_redirects,
        **kwargs,
    )
