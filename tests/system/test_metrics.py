"""GET /system/metrics: the live snapshot."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from agentmesh.accounts.models import Role
from observability.models import RequestSample
from system.selectors.metrics import request_rates, runs_in_flight
from tests.agents.factories import make_agent
from tests.api_base import assert_problem

pytestmark = pytest.mark.django_db

URL = "/api/v1/system/metrics"


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.USER])
def test_only_admins_see_the_metrics(client_for, make_user, role):
    assert_problem(client_for(make_user(role)).get(URL), 403)


def test_anonymous_is_401(api_client):
    assert_problem(api_client.get(URL), 401)


def test_snapshot_reports_host_process_database_queues_requests_and_runs(client_for, admin_user, settings):
    settings.SYSTEM_METRICS_WORKER_TIMEOUT = 0.2
    client = client_for(admin_user)
    client.get("/api/v1/system/health")  # one request in the last minute, at least

    body = client.get(URL).json()

    host = body["host"]
    assert 0 <= host["cpu_percent"] <= 100 and host["cpu_count"] >= 1
    assert 0 < host["memory"]["used_bytes"] < host["memory"]["total_bytes"]
    assert host["disk"]["path"] == str(settings.VAR_DIR) and host["disk"]["free_bytes"] > 0
    assert host["load_1m"] >= 0
    api = body["processes"][0]
    import os

    assert api["role"] == "api" and api["pid"] == os.getpid() and api["rss_bytes"] > 10_000_000
    if connection.vendor == "postgresql":
        assert body["database"]["in_use"] >= 1 and body["database"]["max"] >= body["database"]["in_use"]
    else:
        assert body["database"] == {"vendor": "sqlite", "in_use": None, "active": None, "max": None}
    assert body["queues"][0]["name"] == "celery" and body["queues"][0]["depth"] is not None
    assert body["requests"]["count"] >= 1 and body["requests"]["window_seconds"] == 60
    assert body["runs_in_flight"] == {"agent_runs": 0, "workflow_executions": 0, "total": 0}


def test_request_rates_over_the_last_minute():
    now = timezone.now()

    def sample(seconds_ago: float, status: int, ms: float):
        RequestSample.objects.create(
            timestamp=now - timedelta(seconds=seconds_ago),
            method="GET",
            route="/x",
            status=status,
            duration_ms=ms,
        )

    for i in range(18):
        sample(i * 3 + 1, 200, 10 + i)  # 10 … 27 ms
    sample(5, 500, 400)
    sample(7, 503, 500)
    sample(61, 500, 9999)  # older than a minute: not counted

    rates = request_rates(now=now)

    assert rates["count"] == 20 and rates["errors"] == 2
    assert rates["error_rate"] == pytest.approx(0.1)
    assert rates["rate_per_second"] == pytest.approx(20 / 60)
    assert rates["p95_ms"] == 400  # nearest rank: the 19th of 20


def test_runs_in_flight_counts_running_agent_runs_and_executions(developer):
    from agents.models import AgentRun, Conversation, RunStatus

    agent = make_agent(developer)
    conversation = Conversation.objects.create(agent=agent, user=developer)
    for status in (RunStatus.RUNNING, RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.SUCCEEDED):
        AgentRun.objects.create(agent=agent, user=developer, conversation=conversation, status=status)

    assert runs_in_flight() == {"agent_runs": 2, "workflow_executions": 0, "total": 2}
