import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.urls import reverse
from django.utils import timezone

from observability import services
from observability.models import (
    Alert,
    AlertRule,
    LogRecord,
    ObservabilityEvent,
    PipelineState,
    RequestSample,
    Span,
)
from observability.tasks import evaluate_alert_rules, prune_observability_data
from tests.api_base import OwnedResourceAPITests, assert_problem

ALERTS = reverse("observability-api:alert-list")


@pytest.fixture(scope="module")
def webhook_receiver():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


class TestAlertRuleAPI(OwnedResourceAPITests):
    basename = "observability-api:alertrule"
    model = AlertRule
    create_payload = {
        "name": "errors",
        "metric": "events",
        "threshold": 3,
        "filters": {"level": "error"},
        "channels": [{"type": "log"}],
    }
    update_payload = {"name": "errors2", "metric": "events", "threshold": 5}
    invalid_payload = (
        {"name": "x", "metric": "tokens", "aggregation": "count", "threshold": 1},
        "aggregation",
    )

    def make_object(self, owner):
        return AlertRule.objects.create(owner=owner, name="r", metric="events", threshold=1)


@pytest.mark.django_db
def test_rule_validation(client_for, developer):
    client = client_for(developer)
    url = reverse("observability-api:alertrule-list")
    assert_problem(
        client.post(url, {"name": "x", "metric": "events", "threshold": 1, "filters": {"nope": "1"}}),
        400,
        "filters",
    )
    assert_problem(
        client.post(
            url, {"name": "x", "metric": "events", "threshold": 1, "channels": [{"type": "webhook"}]}
        ),
        400,
        "channels[0].url",
    )


@pytest.mark.django_db
def test_rule_fires_once_notifies_and_resolves(
    developer, webhook_receiver, caplog, django_capture_on_commit_callbacks
):
    url, received = webhook_receiver
    rule = AlertRule.objects.create(
        owner=developer,
        name="too many errors",
        metric="events",
        aggregation="count",
        comparison="gte",
        threshold=2,
        window_minutes=5,
        filters={"level": "error"},
        channels=[{"type": "log"}, {"type": "webhook", "url": url}],
    )
    services.event_record(type="tool.failed", level="error")
    evaluate_alert_rules.delay()
    assert not Alert.objects.exists()  # 1 < 2

    services.event_record(type="tool.failed", level="error")
    with django_capture_on_commit_callbacks(execute=True):
        evaluate_alert_rules.delay()
        evaluate_alert_rules.delay()  # still breached: no duplicate
    alert = Alert.objects.get(rule=rule)
    assert alert.state == "firing" and alert.value == 2 and alert.owner == developer
    assert "alert fired: too many errors" in caplog.text
    notes = ObservabilityEvent.objects.filter(type="alert.notification", resource_id=str(alert.pk))
    assert notes.count() == 1
    webhook = next(r for r in notes.get().payload["results"] if r["type"] == "webhook")
    assert webhook["ok"], webhook
    assert received and received[-1]["alert_id"] == str(alert.pk) and received[-1]["transition"] == "fired"

    rule.refresh_from_db()
    assert rule.last_value == 2 and rule.last_evaluated_at

    ObservabilityEvent.objects.filter(type="tool.failed").update(
        timestamp=timezone.now() - timedelta(hours=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        evaluate_alert_rules.delay()
    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.resolved_at and alert.resolved_by is None
    assert (
        ObservabilityEvent.objects.filter(type="alert.notification", resource_id=str(alert.pk)).count() == 2
    )
    assert PipelineState.objects.get(key="alert_evaluation").value["rules"] == 1

    services.event_record(type="tool.failed", level="error")
    services.event_record(type="tool.failed", level="error")
    evaluate_alert_rules.delay()
    assert Alert.objects.filter(rule=rule).count() == 2  # a new episode after resolution


@pytest.mark.django_db
def test_other_metrics_evaluate(developer):
    rule = AlertRule.objects.create(
        owner=developer,
        name="cost",
        metric="cost_usd",
        aggregation="sum",
        comparison="gt",
        threshold=1.0,
        filters={"model": "gpt-x"},
    )
    with services.span(
        "chat", kind="llm", attributes={"gen_ai.request.model": "gpt-x", "agentmesh.cost_usd": 1.5}
    ):
        pass
    assert services.alert_rule_evaluate(rule=rule) is not None
    slow = AlertRule.objects.create(
        owner=developer,
        name="slow",
        metric="http_requests",
        aggregation="p95",
        comparison="gt",
        threshold=100,
    )
    now = timezone.now()
    RequestSample.objects.bulk_create(
        [
            RequestSample(timestamp=now, method="GET", route="/x", status=200, duration_ms=ms)
            for ms in range(10, 210, 10)
        ]
    )
    assert services.alert_rule_evaluate(rule=slow).value == 190


@pytest.mark.django_db
def test_alert_api_manual_dedup_acknowledge_resolve(client_for, developer, other_developer, admin_user):
    client = client_for(developer)
    first = client.post(ALERTS, {"title": "queue backlog", "severity": "critical", "dedup_key": "backlog"})
    assert first.status_code == 201, first.json()
    again = client.post(ALERTS, {"title": "queue backlog", "dedup_key": "backlog"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again.json()["occurrences"] == 2
    alert_id = first.json()["id"]
    assert [a["id"] for a in client.get(ALERTS).json()["results"]] == [alert_id]
    assert client_for(other_developer).get(ALERTS).json()["results"] == []
    assert_problem(
        client_for(other_developer).post(reverse("observability-api:alert-acknowledge", args=[alert_id])), 404
    )
    assert client_for(admin_user).get(ALERTS, {"state": "firing"}).json()["results"][0]["id"] == alert_id

    ack = client.post(reverse("observability-api:alert-acknowledge", args=[alert_id]))
    assert ack.status_code == 200 and ack.json()["state"] == "acknowledged"
    assert ack.json()["acknowledged_by"] == developer.username
    resolved = client.post(reverse("observability-api:alert-resolve", args=[alert_id]))
    assert resolved.json()["state"] == "resolved"
    assert_problem(client.post(reverse("observability-api:alert-acknowledge", args=[alert_id])), 409)
    assert client.get(ALERTS, {"state": "firing"}).json()["results"] == []
    assert client.post(ALERTS, {"title": "queue backlog", "dedup_key": "backlog"}).status_code == 201
    assert_problem(client.post(ALERTS, {"severity": "loud"}), 400, "title")


@pytest.mark.django_db
def test_retention_prunes_old_rows_only_and_keeps_active_runs(settings):
    settings.OBSERVABILITY_PRUNE_BATCH_SIZE = 2  # several batches
    old = timezone.now() - timedelta(days=400)
    events = [services.event_record(type="old.event", timestamp=old) for _ in range(5)]
    fresh = services.event_record(type="fresh.event")
    done = services.span_start("old run", kind="workflow")
    services.span_end(done)
    running = services.span_start("still running", kind="workflow")
    Span.objects.filter(span_id__in=[done.span_id, running.span_id]).update(start_time=old)
    ObservabilityEvent.objects.filter(pk=events[0].pk).update(trace_id=running.trace_id)
    LogRecord.objects.bulk_create(
        [
            LogRecord(timestamp=old, level="warning", levelno=30, logger="x", message="old"),
            LogRecord(timestamp=timezone.now(), level="warning", levelno=30, logger="x", message="new"),
        ]
    )
    prune_observability_data.delay()
    assert set(ObservabilityEvent.objects.values_list("pk", flat=True)) == {events[0].pk, fresh.pk}
    assert list(Span.objects.values_list("name", flat=True)) == ["still running"]
    assert list(LogRecord.objects.values_list("message", flat=True)) == ["new"]
    summary = PipelineState.objects.get(key="retention").value
    assert summary["events"] == 4 and summary["spans"] == 1 and summary["logs"] == 1
