"""GET /system/logs: observability's log sink, for admins, filtered, cursor-paginated."""

from datetime import UTC, datetime, timedelta

import pytest

from agentmesh.accounts.models import Role
from observability.models import LogRecord
from tests.api_base import assert_problem

pytestmark = pytest.mark.django_db

URL = "/api/v1/system/logs"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
LEVELNO = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def log(minutes: int, level: str, logger: str, message: str, **fields) -> LogRecord:
    return LogRecord.objects.create(
        timestamp=T0 + timedelta(minutes=minutes),
        level=level,
        levelno=LEVELNO[level],
        logger=logger,
        message=message,
        **fields,
    )


@pytest.fixture
def records(developer):
    return [
        log(0, "warning", "agents.runtime", "slow model", request_id="req-1", trace_id="a" * 32),
        log(1, "error", "workflows.engine", "step failed", trace_id="b" * 32, exception="Traceback …"),
        log(2, "info", "system.services", "pool restarted"),
        log(3, "critical", "agents.llm", "breaker open", request_id="req-2", user_id=developer.pk),
        log(4, "warning", "agents.llm.client", "retrying after 429"),
    ]


def messages(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [r["message"] for r in response.json()["results"]]


def test_admins_list_every_record_newest_first(client_for, admin_user, records):
    body = client_for(admin_user).get(URL).json()

    assert [r["message"] for r in body["results"]] == [r.message for r in reversed(records)]
    assert body["results"][3]["exception"] == "Traceback …"  # admins see tracebacks


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"level": "error"}, ["breaker open", "step failed"]),
        ({"logger": "agents.llm"}, ["retrying after 429", "breaker open"]),
        (
            {"since": "2026-11-30T12:01:00Z", "until": "2026-11-30T12:03:00Z"},
            ["pool restarted", "step failed"],
        ),
        ({"request_id": "req-1"}, ["slow model"]),
        ({"trace_id": "b" * 32}, ["step failed"]),
        ({"q": "FAILED"}, ["step failed"]),
        ({"level": "warning", "logger": "agents"}, ["retrying after 429", "breaker open", "slow model"]),
    ],
)
def test_filters(client_for, admin_user, records, params, expected):
    assert messages(client_for(admin_user).get(URL, params)) == expected


def test_cursor_pagination_walks_every_record_once(client_for, admin_user, records):
    client = client_for(admin_user)
    seen, url, params = [], URL, {"page_size": 2}
    while url:
        body = client.get(url, params).json()
        assert len(body["results"]) <= 2
        seen.extend(r["id"] for r in body["results"])
        url, params = body["next"], None
        if url:
            assert "cursor=" in url
    assert seen == [r.pk for r in reversed(records)]


def test_a_bad_filter_is_a_400_naming_it(client_for, admin_user):
    assert_problem(client_for(admin_user).get(URL, {"level": "loud"}), 400, "level")
    assert_problem(client_for(admin_user).get(URL, {"since": "yesterday"}), 400, "since")


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.USER])
def test_only_admins_read_the_system_logs(client_for, make_user, records, role):
    """Even the records of their own requests: those are at /observability/logs."""
    assert_problem(client_for(make_user(role)).get(URL), 403)
