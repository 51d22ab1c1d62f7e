"""The admin index dashboard (#agentmesh-dashboard): runs and executions of the last 24 h by
status, the failing ones linked to their admin pages, open alerts, workers, beat and queues."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from agentmesh.accounts.models import Role
from agentmesh.celery import app as celery_app
from agents.models import AgentRun
from observability.services import alert_create_manual
from system import services
from system.models import SystemCheck
from tests.system.status_helpers import make_execution, make_run


@pytest.fixture(autouse=True)
def _quiet_broker(quiet_broker):
    """An empty broker of this test's own (tests/system/conftest.py)."""


@pytest.fixture
def admin(make_user):
    return make_user(Role.ADMIN, is_staff=True)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _section(page: str, section: str) -> str:
    match = re.search(rf'<div id="{section}".*?</div>', page, re.S)
    assert match, section
    return match.group(0)


@pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored")
def test_admins_see_the_dashboard_above_the_app_list(admin, developer):
    for status in ("succeeded", "succeeded", "failed", "running"):
        make_run(developer, status)
    failed = make_run(developer, "failed", error="model exploded")
    old = make_run(developer, "failed")
    AgentRun.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=30))
    timed_out = make_execution(developer, "timed_out", error="deadline")
    make_execution(developer, "succeeded")
    make_execution(developer, "waiting")
    alert, _ = alert_create_manual(owner=developer, title="Disk nearly full", severity="critical")
    services.beat_tick_sent()
    with celery_app.connection_for_write() as conn:  # 2 messages waiting in the default queue
        for n in range(2):
            celery_app.send_task("system.tasks.record_worker_heartbeat", args=[f"h{n}"], connection=conn)

    page = _client(admin).get(reverse("admin:index")).content.decode()

    dashboard = _section(page, "agentmesh-dashboard")
    assert page.index('id="agentmesh-dashboard"') < page.index('id="content-main"')
    runs = _section(page, "dashboard-runs")
    assert re.search(r'class="runs-total">5<', runs)  # the 30 h old one is out
    assert 'data-status="failed">failed: 2<' in runs and 'data-status="succeeded">succeeded: 2<' in runs
    assert 'data-status="running">running: 1<' in runs
    assert re.search(r'class="executions-total">3<', runs)
    assert 'data-status="timed_out">timed_out: 1<' in runs

    failing = _section(page, "dashboard-failing")
    assert failing.count('class="failed-run"') == 2
    assert f'href="{reverse("admin:agents_agentrun_change", args=[failed.pk])}"' in failing
    assert "model exploded" in failing
    assert str(old.pk) not in failing
    assert f'href="{reverse("admin:workflows_workflowexecution_change", args=[timed_out.pk])}"' in failing

    alerts = _section(page, "dashboard-alerts")
    assert "Disk nearly full" in alerts and "[critical, firing]" in alerts
    assert reverse("admin:observability_alert_change", args=[alert.pk]) in alerts

    workers = _section(page, "dashboard-workers")
    assert "Workers: down (0)" in workers and "Beat: up" in workers and "No live worker" in workers
    queues = _section(page, "dashboard-queues")
    assert 'data-queue="celery">celery: 2<' in queues
    assert "System: degraded" in dashboard


def test_the_dashboard_costs_a_fixed_number_of_queries(admin, developer):
    client = _client(admin)
    make_run(developer, "failed")
    client.get(reverse("admin:index"))  # the status is measured and cached here
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("admin:index"))
    for _ in range(5):
        make_run(developer, "failed")
        make_execution(developer, "failed")
        alert_create_manual(owner=developer, title="x")
    with CaptureQueriesContext(connection) as many:
        page = client.get(reverse("admin:index")).content.decode()
    assert page.count('class="failed-run"') == 6
    assert len(many.captured_queries) == len(few.captured_queries)


def test_staff_who_are_not_admins_get_the_stock_index(make_user):
    staff = make_user(Role.DEVELOPER, is_staff=True)
    page = _client(staff).get(reverse("admin:index")).content.decode()
    assert 'id="content-main"' in page
    assert "agentmesh-dashboard" not in page


def test_evaluate_a_check_from_its_admin_page(make_user, settings):
    settings.SYSTEM_ALERT_DISK_FREE_PERCENT = 100.5
    services.system_checks_evaluate(keys=["disk_low"])
    settings.SYSTEM_ALERT_DISK_FREE_PERCENT = 0
    client = _client(make_user(Role.ADMIN, is_staff=True, is_superuser=True))
    url = reverse("admin:system_systemcheck_object_action", args=["disk_low", "evaluate"])
    assert (
        "Evaluate now"
        in client.get(reverse("admin:system_systemcheck_change", args=["disk_low"])).content.decode()
    )
    assert client.get(url).status_code == 200  # the confirmation page
    assert SystemCheck.objects.get(key="disk_low").state == "firing"
    response = client.post(url)
    assert response.status_code == 302
    assert SystemCheck.objects.get(key="disk_low").state == "ok"
