"""Fake OpenAI and Anthropic servers: real threaded HTTP servers on 127.0.0.1 speaking the providers'
wire formats, so the official SDKs (and everything above them) run unmodified against them.

    with FakeOpenAI() as fake:                      # or fake = FakeOpenAI().start(); ...; fake.stop()
        fake.push(Reply.text("hi", usage=(12, 3)))
        fake.push(Reply.tool_calls([("get_weather", {"city": "Oslo"}), ("get_time", {})]))
        fake.push(Reply.error(429, retry_after=1), Reply.error(500), Reply.text("late", delay=2.0))
        base_url = fake.url                         # OpenAI: "<root>/v1"; Anthropic: the root URL
        ...
        fake.requests[0].body["messages"]; fake.requests[0].headers["authorization"]

Replies are served in FIFO order; an empty script answers `default_reply` (Reply.text("ok")). Each reply
is sent as one JSON response, or as an SSE stream when the request has `"stream": true`:
  OpenAI     `chat.completion.chunk` events (text word by word, tool-call arguments split across several
             chunks), a finish chunk, a usage chunk when `stream_options.include_usage`, `data: [DONE]`.
  Anthropic  message_start, content_block_start / content_block_delta (text_delta, input_json_delta
             split) / content_block_stop, ping, message_delta (stop_reason, usage), message_stop.
Errors use each provider's error body and carry `retry-after` / `retry-after-ms` (and any `headers`) when
asked; Reply.error(307, headers={"location": ...}) is a redirect.
`delay` waits before the response starts; `chunk_delay` waits between streamed events.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_ids = itertools.count(1)


@dataclass
class Reply:
    content: str | None = None
    calls: list[tuple[str, Any]] = field(default_factory=list)  # (name, arguments dict or raw JSON text)
    usage: tuple[int, int] = (10, 5)  # (input tokens, output tokens)
    finish_reason: str | None = None  # Chat Completions terms; default stop / tool_calls
    model: str | None = None  # default: the requested model
    status: int = 200
    message: str = ""
    retry_after: float | None = None
    retry_after_ms: float | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers

    @classmethod
    def text(
        cls,
        content: str,
        *,
        usage: tuple[int, int] = (10, 5),
        delay: float = 0.0,
        chunk_delay: float = 0.0,
        finish_reason: str | None = None,
        model: str | None = None,
    ) -> Reply:
        return cls(
            content=content,
            usage=usage,
            delay=delay,
            chunk_delay=chunk_delay,
            finish_reason=finish_reason,
            model=model,
        )

    @classmethod
    def tool_calls(
        cls,
        calls: list[tuple[str, Any]],
        *,
        content: str | None = None,
        usage: tuple[int, int] = (10, 5),
        delay: float = 0.0,
        chunk_delay: float = 0.0,
        model: str | None = None,
    ) -> Reply:
        return cls(
            content=content,
            calls=list(calls),
            usage=usage,
            delay=delay,
            chunk_delay=chunk_delay,
            model=model,
        )

    @classmethod
    def error(
        cls,
        status: int,
        *,
        message: str = "",
        retry_after: float | None = None,
        retry_after_ms: float | None = None,
        delay: float = 0.0,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        return cls(
            status=status,
            message=message or f"fake error {status}",
            retry_after=retry_after,
            retry_after_ms=retry_after_ms,
            delay=delay,
            headers=dict(headers or {}),
        )

    def arguments(self) -> list[str]:
        return [a if isinstance(a, str) else json.dumps(a) for _name, a in self.calls]

    def error_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.retry_after is not None:
            headers["retry-after"] = f"{self.retry_after:g}"
        if self.retry_after_ms is not None:
            headers["retry-after-ms"] = f"{self.retry_after_ms:g}"
        return headers


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any  # the parsed JSON body (or the text when it is not JSON)


def split(text: str, parts: int = 3) -> list[str]:
    """`text` cut into `parts` non-empty pieces (fewer when it is shorter)."""
    if len(text) <= 1:
        return [text]
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


def words(text: str) -> list[str]:
    """`text` in pieces of one word with its leading space."""
    pieces, current = [], ""
    for char in text:
        if char == " " and current.strip():
            pieces.append(current)
            current = ""
        current += char
    if current:
        pieces.append(current)
    return pieces


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address) -> None:
        pass  # clients that gave up (timeouts) close the connection under a sleeping handler


class _FakeServer:
    default_reply = Reply.text("ok")

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> _FakeServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                fake._serve(self)

            def do_GET(self) -> None:
                fake._serve(self)

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> _FakeServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def root(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- script ---------------------------------------------------------------------------------
    def push(self, *replies: Reply) -> _FakeServer:
        with self._lock:
            self._script.extend(replies)
        return self

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._script.popleft() if self._script else self.default_reply

    def reset(self) -> None:
        """Forget the script and the recorded requests (for a server shared by several tests)."""
        with self._lock:
            self._script.clear()
            self.requests.clear()

    @property
    def pending(self) -> int:
        """Replies pushed and not served yet."""
        with self._lock:
            return len(self._script)

    # --- serving --------------------------------------------------------------------------------
    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    method=handler.command,
                    path=url.path,
                    query={k: v[0] for k, v in parse_qs(url.query).items()},
                    headers={k.lower(): v for k, v in handler.headers.items()},
                    body=body,
                )
            )
        if not self._route_ok(url.path):
            self._json(handler, 404, {"error": {"message": f"no route {url.path}", "type": "not_found"}})
            return
        reply = self._next_reply()
        try:
            if reply.delay:
                time.sleep(reply.delay)
            if reply.status >= 300:
                self._json(handler, reply.status, self._error_body(reply), reply.error_headers())
            elif isinstance(body, dict) and body.get("stream"):
                self._start_stream(handler)
                for event, data in self._events(reply, body):
                    self._send_event(handler, event, data)
                    if reply.chunk_delay:
                        time.sleep(reply.chunk_delay)
                handler.wfile.write(b"0\r\n\r\n")
                handler.wfile.flush()
            else:
                self._json(handler, 200, self._completion(reply, body if isinstance(body, dict) else {}))
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

    @staticmethod
    def _json(handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
        handler.wfile.flush()

    @staticmethod
    def _start_stream(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

    @staticmethod
    def _send_event(handler: BaseHTTPRequestHandler, event: str | None, data: Any) -> None:
        text = data if isinstance(data, str) else json.dumps(data)
        payload = ((f"event: {event}\n" if event else "") + f"data: {text}\n\n").encode()
        handler.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        handler.wfile.flush()

    # Provider specifics.
    def _route_ok(self, path: str) -> bool:
        raise NotImplementedError

    def _error_body(self, reply: Reply) -> Any:
        raise NotImplementedError

    def _completion(self, reply: Reply, body: dict) -> Any:
        raise NotImplementedError

    def _events(self, reply: Reply, body: dict):
        raise NotImplementedError


class FakeOpenAI(_FakeServer):
    """The Chat Completions API: POST <url>/chat/completions (any path ending so, Azure's included)."""

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def _route_ok(self, path: str) -> bool:
        return path.endswith("/chat/completions")

    def _error_body(self, reply: Reply) -> Any:
        kind = {
            400: "invalid_request_error",
            401: "invalid_request_error",
            403: "permission_denied",
            404: "invalid_request_error",
            429: "requests",
        }.get(reply.status, "server_error")
        code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(reply.status)
        return {"error": {"message": reply.message, "type": kind, "param": None, "code": code}}

    def _tool_calls(self, reply: Reply, n: int) -> list[dict]:
        return [
            {"id": f"call_{n}_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}
            for i, ((name, _), arguments) in enumerate(zip(reply.calls, reply.arguments(), strict=True))
        ]

    def _finish_reason(self, reply: Reply) -> str:
        return reply.finish_reason or ("tool_calls" if reply.calls else "stop")

    def _usage(self, reply: Reply) -> dict:
        prompt, completion = reply.usage
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _completion(self, reply: Reply, body: dict) -> Any:
        n = next(_ids)
        message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
        if reply.calls:
            message["tool_calls"] = self._tool_calls(reply, n)
        return {
            "id": f"chatcmpl-fake{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model or body.get("model") or "fake-model",
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self._finish_reason(reply),
                }
            ],
            "usage": self._usage(reply),
        }

    def _events(self, reply: Reply, body: dict):
        n = next(_ids)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {
            "id": f"chatcmpl-fake{n}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": reply.model or body.get("model") or "fake-model",
            "system_fingerprint": None,
        }

        def chunk(delta: dict, finish_reason: str | None = None) -> dict:
            data = {
                **base,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                data["usage"] = None
            return data

        yield None, chunk({"role": "assistant", "content": ""})
        for piece in words(reply.content or ""):
            yield None, chunk({"content": piece})
        for i, call in enumerate(self._tool_calls(reply, n)):
            function = call["function"]
            yield (
                None,
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": function["name"], "arguments": ""},
                            }
                        ]
                    }
                ),
            )
            for piece in split(function["arguments"]):
                yield None, chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        yield None, chunk({}, self._finish_reason(reply))
        if include_usage:
            yield None, {**base, "choices": [], "usage": self._usage(reply)}
        yield None, "[DONE]"


class FakeAnthropic(_FakeServer):
    """The Messages API: POST <url>/v1/messages."""

    STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal"}
    ERROR_TYPES = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        529: "overloaded_error",
    }

    @property
    def url(self) -> str:
        return self.root

    def _route_ok(self, path: str) -> bool:
        return path == "/v1/messages"

    def _error_body(self, reply: Reply) -> Any:
        kind = self.ERROR_TYPES.get(reply.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": reply.message}, "request_id": "req_fake"}

    def _stop_reason(self, reply: Reply) -> str:
        if reply.calls:
            return "tool_use"
        return self.STOP_REASONS.get(reply.finish_reason or "stop", "end_turn")

    def _blocks(self, reply: Reply, n: int) -> list[dict]:
        blocks: list[dict] = []
        if reply.content:
            blocks.append({"type": "text", "text": reply.content})
        for i, ((name, _), arguments) in enumerate(zip(reply.calls, reply.arguments(), strict=True)):
            try:
                value = json.loads(arguments)
            except ValueError:
                value = None
            blocks.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_fake{n}_{i}",
                    "name": name,
                    "input": value if isinstance(value, dict) else {},
                    "_arguments": arguments,  # streamed as is, so raw (even invalid) JSON can be sent
                }
            )
        return blocks

    def _message(self, reply: Reply, body: dict, n: int) -> dict:
        return {
            "id": f"msg_fake{n}",
            "type": "message",
            "role": "assistant",
            "model": reply.model or body.get("model") or "fake-claude",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": reply.usage[0], "output_tokens": 0},
        }

    def _completion(self, reply: Reply, body: dict) -> Any:
        n = next(_ids)
        message = self._message(reply, body, n)
        message.update(
            content=[{k: v for k, v in b.items() if k != "_arguments"} for b in self._blocks(reply, n)],
            stop_reason=self._stop_reason(reply),
            usage={"input_tokens": reply.usage[0], "output_tokens": reply.usage[1]},
        )
        return message

    def _events(self, reply: Reply, body: dict):
        n = next(_ids)
        message = self._message(reply, body, n)
        message["usage"]["output_tokens"] = 1
        yield "message_start", {"type": "message_start", "message": message}
        for index, block in enumerate(self._blocks(reply, n)):
            if block["type"] == "text":
                start = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": piece} for piece in words(block["text"])]
            else:
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                arguments = block["_arguments"]
                deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in split(arguments)]
            yield (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
            if index == 0:
                yield "ping", {"type": "ping"}
            for delta in deltas:
                yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
            yield "content_block_stop", {"type": "content_block_stop", "index": index}
        yield (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": self._stop_reason(reply), "stop_sequence": None},
                "usage": {"output_tokens": reply.usage[1]},
            },
        )
        yield "message_stop", {"type": "message_stop"}
