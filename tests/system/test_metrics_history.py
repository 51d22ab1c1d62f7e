"""Metrics history: sampled by the beat task, downsampled in the database, pruned by retention."""

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from agentmesh.accounts.models import Role
from system.models import MetricSample
from system.selectors.metrics import HISTORY_METRICS
from system.services import metric_samples_record
from system.tasks import sample_system_metrics
from tests.api_base import assert_problem

pytestmark = pytest.mark.django_db

URL = "/api/v1/system/metrics/history"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # on an hour boundary: buckets align with it


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_the_beat_task_is_scheduled_every_interval():
    entry = settings.CELERY_BEAT_SCHEDULE["system-metrics-sample"]
    assert entry == {
        "task": "system.tasks.sample_system_metrics",
        "schedule": float(settings.SYSTEM_METRICS_INTERVAL),
    }


def test_the_task_samples_every_history_metric_it_can_measure():
    sample_system_metrics.delay()
    sample_system_metrics.delay()

    by_metric = {}
    for sample in MetricSample.objects.all():
        by_metric.setdefault(sample.metric, []).append(sample.value)
    expected = set(HISTORY_METRICS)
    from django.db import connection

    if connection.vendor != "postgresql":
        expected.discard("db_connections")  # SQLite has no server connections to count
    expected.discard("latency_p95_ms")  # no request in the last minute: no percentile
    assert expected <= set(by_metric) <= set(HISTORY_METRICS)
    assert all(len(values) == 2 for values in by_metric.values())
    assert 0 <= by_metric["cpu_percent"][0] <= 100
    assert by_metric["process_rss_bytes"][0] > 10_000_000


def test_history_is_downsampled_into_buckets(client_for, admin_user):
    for seconds, value in [(0, 1), (20, 2), (40, 3), (60, 10), (80, 20), (180, 7)]:
        metric_samples_record(values={"cpu_percent": value, "load_1m": 100 + value}, now=at(seconds))
    client = client_for(admin_user)

    body = client.get(
        URL, {"metric": "cpu_percent", "since": iso(T0), "until": iso(at(240)), "step": 60}
    ).json()

    assert body["metric"] == "cpu_percent" and body["step"] == 60
    assert body["buckets"] == [
        {"start": iso(at(0)), "avg": 2.0, "min": 1.0, "max": 3.0, "count": 3},
        {"start": iso(at(60)), "avg": 15.0, "min": 10.0, "max": 20.0, "count": 2},
        {"start": iso(at(180)), "avg": 7.0, "min": 7.0, "max": 7.0, "count": 1},  # empty buckets left out
    ]

    wide = client.get(
        URL, {"metric": "cpu_percent", "since": iso(T0), "until": iso(at(300)), "step": 300}
    ).json()
    assert wide["buckets"] == [{"start": iso(T0), "avg": 43 / 6, "min": 1.0, "max": 20.0, "count": 6}]

    # [since, until) and the metric select the samples.
    narrow = client.get(
        URL, {"metric": "load_1m", "since": iso(at(20)), "until": iso(at(60)), "step": 60}
    ).json()
    assert narrow["buckets"] == [{"start": iso(at(0)), "avg": 102.5, "min": 102.0, "max": 103.0, "count": 2}]


def test_default_range_is_the_last_hour_in_interval_steps(client_for, admin_user):
    body = client_for(admin_user).get(URL, {"metric": "queue_depth"}).json()

    since = datetime.fromisoformat(body["since"])
    until = datetime.fromisoformat(body["until"])
    assert until - since == timedelta(hours=1)
    assert body["step"] == settings.SYSTEM_METRICS_INTERVAL and body["buckets"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "metric"),
        ({"metric": "nope"}, "metric"),
        ({"metric": "cpu_percent", "since": "yesterday"}, "since"),
        ({"metric": "cpu_percent", "until": "2026-13-01T00:00:00Z"}, "until"),
        (
            {"metric": "cpu_percent", "since": "2026-11-30T12:00:00Z", "until": "2026-11-30T11:00:00Z"},
            "since",
        ),
        (
            {"metric": "cpu_percent", "since": "2026-11-30T12:00:00Z", "until": "2026-11-30T12:00:00Z"},
            "since",
        ),
        ({"metric": "cpu_percent", "step": "0"}, "step"),
        ({"metric": "cpu_percent", "step": "abc"}, "step"),
        ({"metric": "cpu_percent", "step": str(8 * 24 * 3600)}, "step"),
        ({"metric": "cpu_percent", "step": "1"}, "step"),  # 3,600 buckets in the default hour
        ({"metric": "cpu_percent", "color": "red"}, "color"),
        ({"metric": "cpu_percent", "until": "0001-01-01T00:00:00Z"}, "until"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(client_for, admin_user, params, field):
    assert_problem(client_for(admin_user).get(URL, params), 400, field)


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.USER])
def test_only_admins_read_the_history(client_for, make_user, role):
    assert_problem(client_for(make_user(role)).get(URL, {"metric": "cpu_percent"}), 403)


def test_samples_older_than_the_retention_are_pruned_when_sampling(settings):
    settings.SYSTEM_METRICS_RETENTION_DAYS = 30
    now = datetime(2026, 12, 1, tzinfo=UTC)
    metric_samples_record(values={"cpu_percent": 1}, now=now - timedelta(days=31))
    metric_samples_record(values={"cpu_percent": 2}, now=now - timedelta(days=29))
    assert MetricSample.objects.count() == 2

    metric_samples_record(values={"cpu_percent": 3}, now=now)

    assert sorted(MetricSample.objects.values_list("value", flat=True)) == [2.0, 3.0]


def test_only_history_metrics_are_recorded():
    with pytest.raises(ValueError, match="not history metrics"):
        metric_samples_record(values={"made_up": 1})
    assert not MetricSample.objects.exists()
