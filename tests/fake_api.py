"""A real HTTP API on 127.0.0.1 for tool tests and benchmarks (no mocks of the network).

Routes:
  GET  /items/<id>          {"id", "name", "tags"}
  ANY  /echo                what arrived: method, path, query, headers, JSON body
  GET  /slow?seconds=s      sleeps, then {"slept": s}
  GET  /status/<code>       answers with that status
  ANY  /flaky/<key>?fail=n  fails with 503 n times per key, then {"ok": true, "calls": k}
  GET  /redirect?to=<url>   302 to `to`
  GET  /text                plain text
"""

import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class FakeAPI:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.requests: list[dict] = []
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, status: int, body, content_type: str = "application/json", headers=None):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _handle(self):
                url = urlsplit(self.path)
                query = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                seen = {
                    "method": self.command,
                    "path": url.path,
                    "query": query,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                }
                with api._lock:
                    api.requests.append(seen)
                parts = [p for p in url.path.split("/") if p]
                route = parts[0] if parts else ""
                if route == "items" and len(parts) == 2:
                    return self._reply(200, {"id": parts[1], "name": f"item {parts[1]}", "tags": ["a", "b"]})
                if route == "echo":
                    return self._reply(200, seen)
                if route == "slow":
                    seconds = float(query.get("seconds", "1"))
                    time.sleep(seconds)
                    return self._reply(200, {"slept": seconds})
                if route == "status" and len(parts) == 2:
                    return self._reply(int(parts[1]), {"status": int(parts[1])})
                if route == "flaky" and len(parts) == 2:
                    with api._lock:
                        api.calls[parts[1]] += 1
                        count = api.calls[parts[1]]
                    if count <= int(query.get("fail", "1")):
                        return self._reply(503, {"error": "try again"})
                    return self._reply(200, {"ok": True, "calls": count})
                if route == "redirect":
                    return self._reply(302, b"", "text/plain", {"Location": query.get("to", "/")})
                if route == "text":
                    return self._reply(200, b"hello, plain world", "text/plain")
                return self._reply(404, {"error": "not found"})

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "FakeAPI":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def last(self) -> dict:
        with self._lock:
            return self.requests[-1]
