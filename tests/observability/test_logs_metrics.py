import logging
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from observability import buffer, services
from observability.logs import DatabaseLogHandler, JsonFormatter
from observability.models import LogRecord, RequestSample
from tests.api_base import assert_problem

pytestmark = pytest.mark.django_db

LOGS = reverse("observability-api:log-list")
METRICS = reverse("observability-api:metrics")
HEALTH = reverse("observability-api:health")


@pytest.fixture
def db_logging():
    handler = DatabaseLogHandler(level=logging.WARNING)
    log = logging.getLogger("tests.obs")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield log
    log.removeHandler(handler)


def test_log_records_at_or_above_level_are_stored_with_context(db_logging, developer):
    from observability.context import TraceContext, activate, deactivate

    token = activate(
        TraceContext(trace_id="cd" * 16, span_id="ef" * 8, request_id="r-1", user_id=developer.pk)
    )
    try:
        db_logging.info("not stored")
        db_logging.warning("disk almost full: %s%%", 91)
        try:
            raise ValueError("boom")
        except ValueError:
            db_logging.exception("task failed")
    finally:
        deactivate(token)
    buffer.flush(force=True)
    rows = list(LogRecord.objects.order_by("levelno"))
    assert [r.message for r in rows] == ["disk almost full: 91%", "task failed"]
    assert rows[0].level == "warning" and rows[0].request_id == "r-1" and rows[0].trace_id == "cd" * 16
    assert rows[0].user_id == developer.pk
    assert "ValueError: boom" in rows[1].exception


def test_get_logs_filters_and_visibility(db_logging, client_for, admin_user, developer):
    from observability.context import TraceContext, activate, deactivate

    token = activate(TraceContext(trace_id="ab" * 16, request_id="req-9", user_id=developer.pk))
    db_logging.error("payment gateway timeout")
    deactivate(token)
    logging.getLogger("tests.obs.sub").warning("other thing")
    buffer.flush(force=True)
    admin = client_for(admin_user)

    def messages(client=admin, **query):
        response = client.get(LOGS, query)
        assert response.status_code == 200, response.json()
        return {r["message"] for r in response.json()["results"]}

    assert messages() == {"payment gateway timeout", "other thing"}
    assert messages(level="error") == {"payment gateway timeout"}
    assert messages(logger="tests.obs.sub") == {"other thing"}
    assert messages(q="GATEWAY") == {"payment gateway timeout"}
    assert messages(request_id="req-9") == {"payment gateway timeout"}
    assert messages(trace_id="ab" * 16) == {"payment gateway timeout"}
    assert messages(since=(timezone.now() + timedelta(minutes=1)).isoformat()) == set()
    assert messages(client=client_for(developer)) == {"payment gateway timeout"}


def test_log_buffer_is_bounded(settings, db_logging):
    settings.OBSERVABILITY_BUFFER_MAX = 5
    settings.OBSERVABILITY_FLUSH_SECONDS = 3600
    before = buffer.stats()["dropped_logs"]
    for i in range(8):
        db_logging.warning("line %s", i)
    assert len(buffer.BUFFER.logs) == 5
    assert buffer.stats()["dropped_logs"] - before == 3
    buffer.flush(force=True)
    assert [r.message for r in LogRecord.objects.order_by("timestamp", "id")] == [
        f"line {i}" for i in range(3, 8)
    ]


def test_json_formatter_has_context_fields():
    import json

    record = logging.makeLogRecord(
        {
            "name": "x",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": "hello %s",
            "args": ("world",),
        }
    )
    data = json.loads(JsonFormatter().format(record))
    assert data["message"] == "hello world" and data["level"] == "warning"
    assert {"request_id", "user_id", "trace_id", "span_id", "ts"} <= set(data)


def test_metrics_json_aggregates(client_for, developer, admin_user):
    client = client_for(developer)
    for _ in range(3):
        assert client.get("/api/v1/test/widgets").status_code == 200
    client.get("/api/v1/test/widgets/00000000-0000-0000-0000-000000000000")  # 404
    with services.span(
        "chat",
        kind="llm",
        actor=developer,
        attributes={
            "gen_ai.request.model": "gpt-x",
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 5,
            "agentmesh.cost_usd": 0.5,
        },
    ):
        pass
    services.event_record(type="x.y", level="error", actor=developer)
    response = client.get(METRICS, {"window": "1h", "bucket": "minute"})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["scope"] == "user"
    assert body["requests"]["total"] == 4 and body["requests"]["errors"] == 0
    assert body["requests"]["latency_ms"]["p95"] is not None
    assert sum(b["requests"] for b in body["requests"]["series"]) == 4
    assert {"kind": "llm", "status": "ok"}.items() <= body["runs"][0].items()
    model = body["usage"]["by_model"][0]
    assert (model["model"], model["input_tokens"], model["output_tokens"], model["cost_usd"]) == (
        "gpt-x",
        10,
        5,
        "0.500000",
    )
    assert body["usage"]["by_user"][0]["user_id"] == developer.pk
    assert body["events"] == [{"level": "error", "count": 1}]
    admin_body = client_for(admin_user).get(METRICS).json()
    assert admin_body["scope"] == "all" and admin_body["requests"]["total"] >= 5
    assert_problem(client.get(METRICS, {"window": "2y"}), 400, "window")


def test_request_samples_use_route_templates(client_for, developer):
    client_for(developer).get("/api/v1/test/widgets/00000000-0000-0000-0000-000000000000")
    buffer.flush(force=True)
    assert RequestSample.objects.filter(route="/api/v1/test/widgets/{pk}", status=404).exists()


def _scrape(client, **extra):
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def _count(families, method, route, status):
    for sample in families["agentmesh_http_requests"].samples:
        labels = sample.labels
        if sample.name.endswith("_total") and (labels["method"], labels["route"], labels["status"]) == (
            method,
            route,
            str(status),
        ):
            return sample.value
    return 0


def test_prometheus_endpoint_parses_and_counts_a_request(client_for, developer, admin_user, settings):
    admin = client_for(admin_user)
    before = _count(_scrape(admin), "GET", "/api/v1/test/widgets", 200)
    assert client_for(developer).get("/api/v1/test/widgets").status_code == 200
    families = _scrape(admin)
    assert _count(families, "GET", "/api/v1/test/widgets", 200) == before + 1
    hist = families["agentmesh_http_request_duration_seconds"]
    assert hist.type == "histogram"
    inf = [
        s
        for s in hist.samples
        if s.name.endswith("_bucket")
        and s.labels["le"] == "+Inf"
        and s.labels["route"] == "/api/v1/test/widgets"
    ]
    assert inf and inf[0].value >= 1
    assert not any("00000000" in s.labels.get("route", "") for f in families.values() for s in f.samples)


def test_prometheus_endpoint_access(api_client, client_for, developer, settings, db):
    assert api_client.get("/metrics").status_code == 401
    assert client_for(developer).get("/metrics").status_code == 403
    settings.METRICS_TOKEN = "scrape-token-123"
    assert api_client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    families = _scrape(api_client, HTTP_AUTHORIZATION="Bearer scrape-token-123")
    assert "agentmesh_http_requests" in families


def test_counters_are_shared_across_processes_through_the_database(client_for, admin_user):
    """Another process's flushed increments show up in this process's exposition."""
    from observability.models import MetricSeries

    MetricSeries.objects.create(
        name="agentmesh_runs_total", labels='{"kind":"workflow","status":"ok"}', value=7
    )
    services.span_end(services.span_start("wf", kind="workflow", persist=False))  # this process: +1
    families = _scrape(client_for(admin_user))
    values = {
        (s.labels["kind"], s.labels["status"]): s.value
        for s in families["agentmesh_runs"].samples
        if s.name == "agentmesh_runs_total"
    }
    assert values[("workflow", "ok")] == 8


def test_health(client_for, developer, api_client):
    body = client_for(developer).get(HEALTH).json()
    assert body["status"] in ("ok", "degraded")
    assert {"lag_seconds", "pending"} <= set(body["recording"])
    assert body["log_sink"]["database_level"] == "WARNING"
    assert "alert_evaluation" in body
    assert_problem(api_client.get(HEALTH), 401)
