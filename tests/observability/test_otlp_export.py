"""Spans are also exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set.

A real HTTP server on 127.0.0.1 plays the collector; the bodies it receives are decoded with
the OTLP protobuf definitions.
"""

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as OtlpStatus

from observability import otlp, services
from observability.models import Span

pytestmark = pytest.mark.django_db


class _Collector:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with collector._lock:
                    collector.requests.append((self.path, self.headers.get("Content-Type", ""), body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self) -> list[tuple[str, str, bytes]]:
        with self._lock:
            taken, self.requests = self.requests, []
        return taken


@pytest.fixture(scope="module")
def collector():
    c = _Collector()
    thread = threading.Thread(target=c.server.serve_forever, daemon=True)
    thread.start()
    yield c
    c.server.shutdown()
    c.server.server_close()
    thread.join(5)


@pytest.fixture(autouse=True)
def _fresh_exporter(collector, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    otlp.shutdown()
    collector.take()
    yield
    otlp.shutdown()


def _exported(collector) -> tuple[list, dict]:
    """(resource spans, {span name: span}) of everything the collector received."""
    assert otlp.force_flush(5000)
    requests = collector.take()
    assert requests, "the collector received nothing"
    resource_spans, spans = [], {}
    for path, content_type, body in requests:
        assert path == "/v1/traces"
        assert content_type == "application/x-protobuf"
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        for rs in message.resource_spans:
            resource_spans.append(rs)
            for ss in rs.scope_spans:
                spans.update({s.name: s for s in ss.spans})
    return resource_spans, spans


def _attrs(kvs) -> dict:
    out = {}
    for kv in kvs:
        which = kv.value.WhichOneof("value")
        if which == "array_value":
            out[kv.key] = [getattr(v, v.WhichOneof("value")) for v in kv.value.array_value.values]
        else:
            out[kv.key] = getattr(kv.value, which)
    return out


def _run(fail=True):
    with services.span("agent.run", kind="agent", attributes={"gen_ai.agent.id": "ag1"}) as parent:
        try:
            with services.span(
                "execute_tool lookup",
                kind="tool",
                attributes={
                    "gen_ai.tool.name": "lookup",
                    "gen_ai.usage.input_tokens": 12,
                    "agentmesh.tags": ["a", "b"],
                    "agentmesh.mixed": [1, "x"],
                    "agentmesh.meta": {"k": 1},
                    "agentmesh.none": None,
                },
            ) as child:
                if fail:
                    raise ValueError("tool broke")
        except ValueError:
            pass
    return parent, child


def test_spans_exported_with_our_ids(collector, settings):
    settings.OTEL_EXPORTER_OTLP_ENDPOINT = collector.url
    settings.OTEL_SERVICE_NAME = "agentmesh-test"
    parent, child = _run()

    resource_spans, spans = _exported(collector)
    assert set(spans) == {"agent.run", "execute_tool lookup"}
    for rs in resource_spans:
        assert _attrs(rs.resource.attributes)["service.name"] == "agentmesh-test"

    root, tool = spans["agent.run"], spans["execute_tool lookup"]
    assert root.trace_id == bytes.fromhex(parent.trace_id) == tool.trace_id
    assert root.span_id == bytes.fromhex(parent.span_id)
    assert tool.span_id == bytes.fromhex(child.span_id)
    assert tool.parent_span_id == bytes.fromhex(parent.span_id)
    assert root.parent_span_id == b""
    # Same ids as the rows GET /traces shows.
    assert set(Span.objects.filter(trace_id=parent.trace_id).values_list("span_id", flat=True)) == {
        parent.span_id,
        child.span_id,
    }

    assert root.kind == OtlpSpan.SPAN_KIND_INTERNAL
    assert tool.kind == OtlpSpan.SPAN_KIND_CLIENT
    assert root.status.code == OtlpStatus.STATUS_CODE_OK
    assert tool.status.code == OtlpStatus.STATUS_CODE_ERROR
    assert "ValueError: tool broke" in tool.status.message
    assert 0 < root.start_time_unix_nano <= tool.start_time_unix_nano
    assert tool.start_time_unix_nano <= tool.end_time_unix_nano <= root.end_time_unix_nano

    assert _attrs(root.attributes)["gen_ai.agent.id"] == "ag1"
    attrs = _attrs(tool.attributes)
    assert attrs["gen_ai.tool.name"] == "lookup"
    assert attrs["gen_ai.usage.input_tokens"] == 12
    assert attrs["agentmesh.span.kind"] == "tool"
    assert attrs["agentmesh.tags"] == ["a", "b"]
    assert attrs["agentmesh.mixed"] == '[1, "x"]'
    assert attrs["agentmesh.meta"] == '{"k": 1}'
    assert "agentmesh.none" not in attrs


def test_unset_endpoint_builds_and_sends_nothing(collector, settings):
    settings.OTEL_EXPORTER_OTLP_ENDPOINT = ""
    _run(fail=False)
    assert not otlp.is_built()
    assert otlp.force_flush(1000)
    assert collector.take() == []
    assert Span.objects.count() == 2  # still recorded in our own table


def test_exporter_rebuilt_when_endpoint_changes(collector, settings):
    settings.OTEL_EXPORTER_OTLP_ENDPOINT = collector.url + "/"
    with services.span("first"):
        pass
    first = otlp._state
    settings.OTEL_EXPORTER_OTLP_ENDPOINT = collector.url + "/v1/traces"  # used as is
    with services.span("second"):
        pass
    assert otlp._state is not first
    _, spans = _exported(collector)  # the old processor flushed on its shutdown
    assert set(spans) == {"first", "second"}


def test_traces_url():
    assert otlp.traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert otlp.traces_url("http://c:4318/") == "http://c:4318/v1/traces"
    assert otlp.traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"
    assert otlp.traces_url("http://c/otlp") == "http://c/otlp/v1/traces"


def test_export_never_raises(collector, settings, caplog):
    settings.OTEL_EXPORTER_OTLP_ENDPOINT = collector.url
    with caplog.at_level(logging.WARNING, logger="observability.otlp"):
        otlp.export_span({"trace_id": "not hex", "span_id": "zz", "name": "bad"})
    assert "exporting a span over OTLP failed" in caplog.text
