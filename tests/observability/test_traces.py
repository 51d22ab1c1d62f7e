import time

import pytest
from django.urls import reverse

from observability import services
from observability.models import RequestSample, Span
from tests.api_base import assert_problem

pytestmark = pytest.mark.django_db

TRACES = reverse("observability-api:trace-list")


def _run_agent(user, *, fail_tool=False):
    with services.span("agent.run", kind="agent", actor=user, attributes={"gen_ai.agent.id": "ag1"}) as root:
        with services.span(
            "chat gpt-x",
            kind="llm",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-x",
                "gen_ai.agent.id": "ag1",
                "gen_ai.usage.input_tokens": 100,
                "gen_ai.usage.output_tokens": 20,
                "agentmesh.cost_usd": "0.0125",
            },
        ):
            pass
        try:
            with services.span("execute_tool lookup", kind="tool", attributes={"gen_ai.tool.name": "lookup"}):
                if fail_tool:
                    raise ValueError("tool broke")
        except ValueError:
            pass
    return root


def test_span_tree_and_genai_columns(developer):
    root = _run_agent(developer, fail_tool=True)
    spans = {s.name: s for s in Span.objects.filter(trace_id=root.trace_id)}
    assert set(spans) == {"agent.run", "chat gpt-x", "execute_tool lookup"}
    assert spans["agent.run"].parent_span_id == ""
    assert spans["chat gpt-x"].parent_span_id == root.span_id
    llm = spans["chat gpt-x"]
    assert (llm.model, llm.agent_id, llm.input_tokens, llm.output_tokens) == ("gpt-x", "ag1", 100, 20)
    assert str(llm.cost_usd) == "0.012500"
    assert spans["execute_tool lookup"].status == "error"
    assert "tool broke" in spans["execute_tool lookup"].error
    assert spans["agent.run"].user_id == developer.pk
    assert spans["chat gpt-x"].user_id == developer.pk  # inherited from the context
    assert all(s.duration_ms is not None and s.end_time for s in spans.values())


def test_list_traces_with_totals_and_filters(client_for, developer, other_developer, admin_user):
    root = _run_agent(developer, fail_tool=True)
    other = _run_agent(other_developer)
    body = client_for(developer).get(TRACES).json()
    assert [t["trace_id"] for t in body["results"]] == [root.trace_id]
    trace = body["results"][0]
    assert trace["name"] == "agent.run" and trace["kind"] == "agent"
    assert trace["span_count"] == 3 and trace["error_count"] == 1
    assert trace["total_tokens"] == 120 and trace["total_cost_usd"] == "0.012500"
    assert trace["duration_ms"] is not None

    admin = client_for(admin_user)
    assert {t["trace_id"] for t in admin.get(TRACES).json()["results"]} == {root.trace_id, other.trace_id}
    assert [t["trace_id"] for t in admin.get(TRACES, {"user": other_developer.pk}).json()["results"]] == [
        other.trace_id
    ]
    assert admin.get(TRACES, {"kind": "workflow"}).json()["results"] == []
    assert [t["trace_id"] for t in admin.get(TRACES, {"trace_id": root.trace_id}).json()["results"]] == [
        root.trace_id
    ]


def test_trace_detail_is_the_span_tree(client_for, developer, other_developer):
    root = _run_agent(developer)
    url = reverse("observability-api:trace-detail", args=[root.trace_id])
    body = client_for(developer).get(url).json()
    assert body["root_span_id"] == root.span_id
    assert [(s["name"], s["depth"]) for s in body["spans"]] == [
        ("agent.run", 0),
        ("chat gpt-x", 1),
        ("execute_tool lookup", 1),
    ]
    assert body["spans"][1]["attributes"]["gen_ai.request.model"] == "gpt-x"
    assert_problem(client_for(other_developer).get(url), 404)
    assert_problem(client_for(developer).get(reverse("observability-api:trace-detail", args=["0" * 32])), 404)


def test_span_start_end_shows_running_then_finished():
    handle = services.span_start("workflow.run", kind="workflow")
    row = Span.objects.get(span_id=handle.span_id)
    assert row.status == "unset" and row.end_time is None
    services.span_end(handle, attributes={"gen_ai.usage.input_tokens": 5})
    row.refresh_from_db()
    assert row.status == "ok" and row.end_time and row.input_tokens == 5


def test_request_ids_and_trace_header(client_for, developer):
    client = client_for(developer)
    response = client.get(TRACES, HTTP_X_REQUEST_ID="req-123")
    assert response["X-Request-ID"] == "req-123"
    assert len(response["X-Trace-ID"]) == 32
    generated = client.get(TRACES, HTTP_X_REQUEST_ID="bad id with spaces")
    assert generated["X-Request-ID"] != "bad id with spaces" and len(generated["X-Request-ID"]) == 32
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traced = client.get(TRACES, HTTP_TRACEPARENT=f"00-{trace_id}-00f067aa0ba902b7-01")
    assert traced["X-Trace-ID"] == trace_id


def test_eager_task_from_a_request_context_is_a_child_span(developer):
    """Within one process (eager tasks) the task span hangs under the current span."""
    from observability.tasks import trace_probe

    with services.span("caller", actor=developer) as root:
        trace_probe.delay("eager")
    spans = {s.name: s for s in Span.objects.filter(trace_id=root.trace_id)}
    assert spans["observability.tasks.trace_probe"].parent_span_id == root.span_id
    assert spans["probe.eager"].parent_span_id == spans["observability.tasks.trace_probe"].span_id


def test_spans_of_a_request_are_written_with_its_root_in_one_insert(rf):
    import contextvars

    from django.db import connection
    from django.http import HttpResponse
    from django.test.utils import CaptureQueriesContext

    from observability.middleware import RequestContextMiddleware

    after_response = {}

    def view(request):
        with services.span("child", kind="tool"), services.span("grandchild", kind="llm"):
            pass
        assert not Span.objects.exists()  # held until the request ends
        after_response["context"] = contextvars.copy_context()
        return HttpResponse("ok")

    with CaptureQueriesContext(connection) as queries:
        response = RequestContextMiddleware(view)(rf.get("/api/v1/anything"))
    span_inserts = [q for q in queries if q["sql"].startswith("INSERT") and "observability_span" in q["sql"]]
    assert len(span_inserts) == 1
    spans = {s.kind: s for s in Span.objects.filter(trace_id=response["X-Trace-ID"])}
    assert [spans[k].name for k in ("http", "tool", "llm")] == ["GET <unmatched>", "child", "grandchild"]
    assert spans["llm"].parent_span_id == spans["tool"].span_id
    assert spans["tool"].parent_span_id == spans["http"].span_id

    # A span that ends after the response left (a streamed run) is written on its own.
    def late_span():
        with services.span("streamed", kind="agent"):
            pass

    after_response["context"].run(late_span)
    assert Span.objects.get(name="streamed").trace_id == response["X-Trace-ID"]


def _request_with_a_span(rf, settings, flush_seconds: float):
    """A request (with one child span) that ends just after a flush, with the given interval."""
    from django.http import HttpResponse

    from observability import buffer
    from observability.middleware import RequestContextMiddleware

    def view(request):
        with services.span("child", kind="tool"):
            pass
        return HttpResponse("ok")

    settings.OBSERVABILITY_FLUSH_SECONDS = flush_seconds
    buffer.BUFFER.last_flush = time.monotonic()
    return RequestContextMiddleware(view)(rf.get("/api/v1/anything"))


def _span_names(response) -> set[str]:
    return set(Span.objects.filter(trace_id=response["X-Trace-ID"]).values_list("name", flat=True))


def test_spans_of_a_request_wait_in_the_write_buffer_until_the_flush_interval(rf, settings):
    from observability import buffer

    response = _request_with_a_span(rf, settings, flush_seconds=3600)
    assert not Span.objects.exists()
    assert buffer.stats()["pending"] >= 3  # the sample and the two spans

    assert buffer.flush(force=True) >= 3
    assert _span_names(response) == {"GET <unmatched>", "child"}
    assert RequestSample.objects.filter(route="<unmatched>").exists()


@pytest.mark.django_db(transaction=True)
def test_an_idle_process_writes_its_buffered_spans_within_the_flush_interval(rf, settings):
    response = _request_with_a_span(rf, settings, flush_seconds=1)
    assert not Span.objects.exists()  # not due yet when the request ended
    deadline = time.monotonic() + 5
    while not Span.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _span_names(response) == {"GET <unmatched>", "child"}  # the flusher thread wrote them


def test_a_worker_task_writes_its_spans_through_the_write_buffer(settings):
    """The task span and the spans ending inside a (non-eager) task are one bulk insert at the
    next flush, not an INSERT each."""
    from types import SimpleNamespace

    from observability import buffer, signals
    from observability.context import CELERY_HEADER

    trace = {"trace_id": "a" * 32, "parent_span_id": "b" * 16, "request_id": "", "user_id": None}
    task = SimpleNamespace(
        name="tests.probe", request=SimpleNamespace(is_eager=False, **{CELERY_HEADER: trace})
    )
    settings.OBSERVABILITY_FLUSH_SECONDS = 3600
    buffer.BUFFER.last_flush = time.monotonic()
    signals.on_task_prerun(task_id="t1", task=task)
    with services.span("inside", kind="tool"):
        pass
    signals.on_task_postrun(task_id="t1", task=task, state="SUCCESS")
    assert not Span.objects.exists()

    buffer.flush(force=True)
    spans = {s.name: s for s in Span.objects.filter(trace_id="a" * 32)}
    assert set(spans) == {"tests.probe", "inside"}
    assert spans["tests.probe"].parent_span_id == "b" * 16
    assert spans["inside"].parent_span_id == spans["tests.probe"].span_id
