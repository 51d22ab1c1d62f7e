"""Built-in system checks (stored as observability alerts: fire once while the condition holds,
resolve when it clears) and GET /system/alerts."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agentmesh.celery import app as celery_app
from integration.models import WebhookDelivery
from integration.services.webhooks import webhook_create
from observability.models import Alert, AlertRule, AlertState, ObservabilityEvent, RequestSample
from observability.services import alert_create_manual
from system import services
from system.models import CheckState, SystemCheck
from system.tasks import evaluate_system_checks
from tests.api_base import assert_problem

URL = "/api/v1/system/alerts"


@pytest.fixture(autouse=True)
def _quiet_broker(quiet_broker):
    """An empty broker of this test's own (tests/system/conftest.py)."""


def system_alerts(key: str):
    return Alert.objects.filter(dedup_key=f"system:{key}", rule__isnull=True)


def events(kind: str, alert: Alert):
    return ObservabilityEvent.objects.filter(type=kind, resource_id=str(alert.pk))


@pytest.mark.parametrize("path", ["alerts", "stats", "info"])
@pytest.mark.parametrize("role", ["developer", "plain_user"])
def test_admin_endpoints_are_403_for_developers_and_users(request, client_for, role, path):
    user = request.getfixturevalue(role)
    assert_problem(client_for(user).get(f"/api/v1/system/{path}"), 403)


def test_a_check_fires_once_while_it_holds_and_resolves_when_it_clears(admin_user, settings):
    webhook, _ = webhook_create(
        owner=admin_user, name="ops", url="http://127.0.0.1:9/hook", event_types=["alert.fired"]
    )
    settings.SYSTEM_ALERT_DISK_FREE_PERCENT = 100.5  # every disk is "low"

    assert services.system_checks_evaluate(keys=["disk_low"]) == {"disk_low": CheckState.FIRING}
    alert = system_alerts("disk_low").get()
    assert alert.state == AlertState.FIRING and alert.owner == admin_user
    assert alert.title == "System: disk low" and alert.severity == "critical"
    assert 0 <= alert.value <= 100
    fired = events("alert.fired", alert).get()
    assert fired.actor_id == admin_user.pk and fired.source == "system"
    # through the owner's webhook, as for any alert
    assert WebhookDelivery.objects.filter(webhook=webhook, event_type="alert.fired").count() == 1
    check = SystemCheck.objects.get(key="disk_low")
    assert check.state == CheckState.FIRING and check.alert == alert and check.threshold == 100.5

    for _ in range(2):  # still holding: the same alert, no new event
        services.system_checks_evaluate(keys=["disk_low"])
    assert system_alerts("disk_low").count() == 1
    assert events("alert.fired", alert).count() == 1
    alert.refresh_from_db()
    assert alert.state == AlertState.FIRING and alert.last_seen_at > alert.fired_at

    settings.SYSTEM_ALERT_DISK_FREE_PERCENT = 0  # cleared
    assert services.system_checks_evaluate(keys=["disk_low"]) == {"disk_low": CheckState.OK}
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED and alert.resolved_at is not None
    assert events("alert.resolved", alert).count() == 1
    assert SystemCheck.objects.get(key="disk_low").alert is None

    services.system_checks_evaluate(keys=["disk_low"])  # still clear: nothing new
    assert system_alerts("disk_low").count() == 1

    settings.SYSTEM_ALERT_DISK_FREE_PERCENT = 100.5  # holds again: a new alert
    services.system_checks_evaluate(keys=["disk_low"])
    assert system_alerts("disk_low").filter(state=AlertState.FIRING).count() == 1
    assert system_alerts("disk_low").count() == 2


def test_an_acknowledged_check_alert_stays_acknowledged_while_it_holds(admin_user, settings):
    from observability.services import alert_acknowledge

    settings.SYSTEM_ALERT_DISK_FREE_PERCENT = 100.5
    services.system_checks_evaluate(keys=["disk_low"])
    alert_acknowledge(alert=system_alerts("disk_low").get(), user=admin_user)
    services.system_checks_evaluate(keys=["disk_low"])
    assert list(system_alerts("disk_low").values_list("state", flat=True)) == [AlertState.ACKNOWLEDGED]


def test_error_rate_check_reads_the_recorded_requests(admin_user, settings):
    settings.SYSTEM_ALERT_ERROR_RATE = 0.2
    settings.SYSTEM_ALERT_ERROR_RATE_MIN_REQUESTS = 10
    now = timezone.now()

    def requests(ok: int, failed: int):
        RequestSample.objects.bulk_create(
            [
                RequestSample(
                    timestamp=now - timedelta(seconds=30), method="GET", route="/x", status=s, duration_ms=1
                )
                for s in [200] * ok + [502] * failed
            ]
        )

    requests(ok=8, failed=1)  # under the minimum number of requests
    assert services.system_checks_evaluate(keys=["error_rate_high"]) == {"error_rate_high": CheckState.OK}
    requests(ok=0, failed=3)  # 4 of 12 failed: 33 %
    assert services.system_checks_evaluate(keys=["error_rate_high"]) == {"error_rate_high": CheckState.FIRING}
    assert system_alerts("error_rate_high").get().value == pytest.approx(4 / 12, abs=1e-3)


def test_beat_silent_fires_and_resolves_with_the_tick(admin_user, settings):
    settings.SYSTEM_BEAT_SILENT_SECONDS = 60
    assert services.system_checks_evaluate(keys=["beat_silent"]) == {"beat_silent": CheckState.FIRING}
    services.beat_tick_sent(at=timezone.now() - timedelta(seconds=90))
    assert services.system_checks_evaluate(keys=["beat_silent"]) == {"beat_silent": CheckState.FIRING}
    assert system_alerts("beat_silent").count() == 1
    services.beat_tick_sent()
    assert services.system_checks_evaluate(keys=["beat_silent"]) == {"beat_silent": CheckState.OK}
    assert system_alerts("beat_silent").get().state == AlertState.RESOLVED


def test_no_live_worker_and_database_and_backlog_checks(admin_user, settings):
    settings.SYSTEM_ALERT_DATABASE_SLOW_MS = 0  # any round trip is "slow"
    settings.SYSTEM_ALERT_QUEUE_BACKLOG = 1000
    states = services.system_checks_evaluate(keys=["no_live_worker", "database_slow", "queue_backlog"])
    assert states == {
        "no_live_worker": CheckState.FIRING,  # nobody listens on this test's broker
        "database_slow": CheckState.FIRING,
        "queue_backlog": CheckState.OK,
    }
    assert system_alerts("no_live_worker").get().severity == "critical"


@pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored")
def test_backlog_check_fires_over_the_threshold(admin_user, settings):
    settings.SYSTEM_ALERT_QUEUE_BACKLOG = 2
    with celery_app.connection_for_write() as conn:
        for n in range(3):
            celery_app.send_task("system.tasks.record_worker_heartbeat", args=[f"h{n}"], connection=conn)
    assert services.system_checks_evaluate(keys=["queue_backlog"]) == {"queue_backlog": CheckState.FIRING}
    alert = system_alerts("queue_backlog").get()
    assert alert.value == 3 and "celery" in alert.message


def test_without_an_admin_the_checks_run_but_raise_no_alert(db, settings):
    settings.SYSTEM_ALERT_DISK_FREE_PERCENT = 100.5
    assert services.system_checks_evaluate(keys=["disk_low"]) == {"disk_low": CheckState.FIRING}
    assert not Alert.objects.exists()
    assert SystemCheck.objects.get(key="disk_low").state == CheckState.FIRING


def test_the_beat_task_evaluates_every_check(admin_user):
    evaluate_system_checks.delay()
    assert set(SystemCheck.objects.values_list("key", flat=True)) == {
        "no_live_worker",
        "queue_backlog",
        "beat_silent",
        "database_slow",
        "disk_low",
        "error_rate_high",
    }


def test_get_alerts_evaluates_when_stale_and_lists_every_open_alert(
    client_for, admin_user, developer, settings
):
    settings.SYSTEM_ALERT_DISK_FREE_PERCENT = 100.5
    rule = AlertRule.objects.create(owner=developer, name="errors", metric="http_errors", threshold=1)
    Alert.objects.create(
        owner=developer, rule=rule, title="errors: 5", fired_at=timezone.now(), last_seen_at=timezone.now()
    )
    alert_create_manual(owner=developer, title="by hand")
    resolved, _ = alert_create_manual(owner=developer, title="old", dedup_key="old")
    resolved.state = AlertState.RESOLVED
    resolved.save()

    body = client_for(admin_user).get(URL).json()

    checks = {c["key"]: c for c in body["checks"]}
    assert set(checks) == {
        "no_live_worker",
        "queue_backlog",
        "beat_silent",
        "database_slow",
        "disk_low",
        "error_rate_high",
    }
    assert checks["disk_low"]["state"] == "firing" and checks["disk_low"]["threshold"] == 100.5
    sources = {a["title"]: a["source"] for a in body["alerts"]}
    assert sources["errors: 5"] == "rule" and sources["by hand"] == "manual"
    assert sources["System: disk low"] == "system"
    assert "old" not in sources  # resolved
    assert body["firing"] == len(body["alerts"])
    assert checks["disk_low"]["alert_id"] in {a["id"] for a in body["alerts"]}
    evaluated = body["evaluated_at"]

    # evaluated lately (by beat, or the last reader): not again
    body = client_for(admin_user).get(URL).json()
    assert body["evaluated_at"] == evaluated

    SystemCheck.objects.update(
        checked_at=timezone.now() - timedelta(seconds=2 * settings.SYSTEM_CHECKS_INTERVAL_SECONDS)
    )
    assert client_for(admin_user).get(URL).json()["evaluated_at"] > evaluated


def test_a_worker_evaluating_the_checks_counts_as_alive(admin_user):
    """A solo-pool worker cannot answer the broadcast while it runs the check task itself."""
    states = services.system_checks_evaluate(keys=["no_live_worker"], running_on="solo@host")
    assert states == {"no_live_worker": CheckState.OK}
    assert "solo@host" in SystemCheck.objects.get(key="no_live_worker").message
