"""Tracebacks stored in the log sink are shown to admins only."""

import logging

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from observability import buffer
from observability.context import TraceContext, activate, deactivate
from observability.logs import DatabaseLogHandler

pytestmark = pytest.mark.django_db

LOGS = "/api/v1/observability/logs"


@pytest.fixture
def crash_logged_for(developer):
    handler = DatabaseLogHandler(level=logging.WARNING)
    log = logging.getLogger("tests.tracebacks")
    log.addHandler(handler)
    token = activate(TraceContext(trace_id="ab" * 16, request_id="req-1", user_id=developer.pk))
    try:
        try:
            raise RecursionError("maximum recursion depth exceeded in secret_module.parse")
        except RecursionError:
            log.exception("Unhandled error in API view")
    finally:
        deactivate(token)
        log.removeHandler(handler)
    buffer.flush(force=True)


def test_the_user_whose_request_crashed_sees_the_record_but_not_the_traceback(
    crash_logged_for, client_for, developer
):
    with CaptureQueriesContext(connection) as queries:
        response = client_for(developer).get(LOGS)
    assert response.status_code == 200, response.json()
    (record,) = response.json()["results"]
    assert record["message"] == "Unhandled error in API view"
    assert record["exception"] is None
    assert "secret_module" not in response.content.decode()
    # Not even read from the database for a non-admin.
    log_selects = [q["sql"] for q in queries if "observability_logrecord" in q["sql"]]
    assert log_selects and not any('"exception"' in sql for sql in log_selects), log_selects


def test_admins_see_the_traceback(crash_logged_for, client_for, admin_user):
    response = client_for(admin_user).get(LOGS)
    assert response.status_code == 200, response.json()
    (record,) = response.json()["results"]
    assert "RecursionError: maximum recursion depth exceeded in secret_module.parse" in record["exception"]
    assert "Traceback (most recent call last)" in record["exception"]
