"""POST /system/restart/{service} in this process (the workers' side: test_restart_workers.py).

Broadcasts here name a worker that does not exist, so no worker of a parallel test is touched:
the replies are empty, as they are when no worker runs."""

import pytest
from django.db import connection

from agentmesh.accounts.models import Role
from agents.llm.base import LLMError
from agents.llm.client import _Breaker
from observability.models import ObservabilityEvent
from system.models import ControlRequest
from system.signals import runtime_config_reload
from tests.agents.factories import make_model
from tests.api_base import assert_problem

pytestmark = pytest.mark.django_db

NOBODY = {"workers": ["nobody@nowhere"]}


@pytest.fixture(autouse=True)
def _short_reply_wait(settings):
    settings.SYSTEM_CONTROL_REPLY_TIMEOUT = 0.2


def restart(client, service: str, body=None):
    return client.post(
        f"/api/v1/system/restart/{service}", body if body is not None else NOBODY, format="json"
    )


def test_an_unknown_service_is_a_404_naming_the_valid_ones(client_for, admin_user):
    body = assert_problem(restart(client_for(admin_user), "database"), 404)
    assert "workers, breakers, caches, connections, config" in body["detail"]
    assert not ControlRequest.objects.exists()


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.USER])
@pytest.mark.parametrize("service", ["workers", "breakers", "config"])
def test_only_admins_restart(client_for, make_user, role, service):
    assert_problem(restart(client_for(make_user(role)), service), 403)
    assert not ControlRequest.objects.exists()


def test_restart_is_recorded_and_audited(client_for, admin_user):
    response = restart(client_for(admin_user), "workers")

    assert response.status_code == 202
    body = response.json()
    assert (
        body["kind"] == "restart"
        and body["target"] == "workers"
        and body["requested_by"] == admin_user.username
    )
    assert body["parameters"] == {"workers": ["nobody@nowhere"], "mode": "pool_restart"}
    assert body["result"] == {"mode": "pool_restart"} and body["replies"] == []  # no such worker answered
    record = ControlRequest.objects.get(pk=body["id"])
    assert record.requested_by == admin_user
    event = ObservabilityEvent.objects.get(type="audit.create", resource_id=str(record.pk))
    assert event.actor_id == admin_user.pk and event.payload["channel"] == "api"


def test_restart_breakers_closes_every_open_breaker(client_for, admin_user, settings):
    settings.LLM_BREAKER_FAILURES = 2
    settings.LLM_BREAKER_COOLDOWN_SECONDS = 300
    failing, healthy = make_model(admin_user, name="failing"), make_model(admin_user, name="healthy")
    for _ in range(2):
        _Breaker(failing, 0).record("timeout")
    with pytest.raises(LLMError) as opened:
        _Breaker(failing, 0).enter()
    assert opened.value.kind == "circuit_open"

    response = restart(client_for(admin_user), "breakers", {})

    assert response.status_code == 202
    result = response.json()["result"]
    assert result["count"] == 1
    assert result["reset"] == [
        {"model_config": str(failing.pk), "name": "failing", "was_open": True, "failures": 0}
    ]
    _Breaker(failing, 0).enter()  # closed: the call goes through
    _Breaker(healthy, 0).enter()


def test_restart_config_sends_the_reload_signal_here(client_for, admin_user):
    received = []

    def receiver(sender, **kwargs):
        received.append(sender)

    runtime_config_reload.connect(receiver)
    try:
        body = restart(client_for(admin_user), "config").json()
    finally:
        runtime_config_reload.disconnect(receiver)

    assert received == [ControlRequest]
    assert body["result"]["local"]["receivers"] >= 1 and body["replies"] == []


def test_a_failing_reload_receiver_is_reported_not_a_500(client_for, admin_user):
    def broken(sender, **kwargs):
        raise RuntimeError("cannot reload")

    runtime_config_reload.connect(broken)
    try:
        response = restart(client_for(admin_user), "config")
    finally:
        runtime_config_reload.disconnect(broken)

    assert response.status_code == 202
    assert response.json()["result"]["local"]["failed"] == [
        "test_a_failing_reload_receiver_is_reported_not_a_500.<locals>.broken: RuntimeError"
    ]


def test_restart_caches_closes_the_cache_clients_here(client_for, admin_user):
    from django.core.cache import cache

    cache.set("before", 1)
    body = restart(client_for(admin_user), "caches").json()

    assert "closed" in body["result"]["local"]
    assert cache.get("before") == 1  # reconnected on use; nothing was cleared


def test_restart_connections_leaves_a_connection_inside_a_transaction_alone(client_for, admin_user):
    body = restart(client_for(admin_user), "connections").json()

    local = body["result"]["local"]
    assert local["skipped_in_transaction"] >= 1  # the test's own transaction
    assert ControlRequest.objects.filter(pk=body["id"]).exists()


@pytest.mark.django_db(transaction=True)
def test_restart_connections_closes_this_process_connection(client_for, admin_user):
    connection.ensure_connection()
    before = connection.connection

    body = restart(client_for(admin_user), "connections").json()

    assert body["result"]["local"]["closed"] >= 1
    connection.ensure_connection()
    assert connection.connection is not before  # a new one was opened


@pytest.mark.parametrize(
    ("service", "payload", "field"),
    [
        ("config", {"mode": "shutdown"}, "mode"),
        ("workers", {"mode": "reboot"}, "mode"),
        ("breakers", {"workers": ["a@b"]}, "workers"),
        ("workers", {"workers": "a@b"}, "workers"),
        ("caches", {"everything": True}, "everything"),
    ],
)
def test_bad_input_is_a_400_naming_it(client_for, admin_user, service, payload, field):
    assert_problem(restart(client_for(admin_user), service, payload), 400, field)
    assert not ControlRequest.objects.exists()


@pytest.fixture
def broker_down(monkeypatch):
    from agentmesh.celery import app as celery_app

    # Nothing listens there. (The read and write URLs follow broker_url unless set.)
    assert celery_app.conf["broker_write_url"] is None and celery_app.conf["broker_read_url"] is None
    monkeypatch.setitem(celery_app.conf, "broker_url", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")  # Celery prefers the environment


def test_a_broker_outage_is_recorded_not_a_500(client_for, admin_user, broker_down):
    received = []

    def receiver(sender, **kwargs):
        received.append(sender)

    runtime_config_reload.connect(receiver)
    try:
        response = restart(client_for(admin_user), "config", {})
    finally:
        runtime_config_reload.disconnect(receiver)

    assert response.status_code == 202
    body = response.json()
    assert body["result"]["error"].startswith("broadcast failed: ") and body["replies"] == []
    assert len(received) == 1  # this process reloaded all the same
    snapshot = client_for(admin_user).get("/api/v1/system/metrics").json()
    assert snapshot["queues"][0]["depth"] is None and [p["role"] for p in snapshot["processes"]] == ["api"]
