"""Webhooks and inbound triggers, against real receivers on 127.0.0.1 started here. The
signatures are checked with the `standardwebhooks` library, independently of our signer."""

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.urls import reverse
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from agentmesh.core.crypto import decrypt
from integration.models import DeliveryStatus, Webhook, WebhookDelivery, WorkflowTrigger
from integration.services import webhooks as services
from integration.tasks.webhooks import webhook_deliver_task
from observability.models import ObservabilityEvent
from observability.services import event_record
from tests.api_base import assert_problem
from workflows import services as workflow_services
from workflows.models import WorkflowExecution

pytestmark = pytest.mark.django_db


class Receiver:
    """A webhook receiver: verifies each request with `standardwebhooks`, answers 500 to the
    first `fail_first` requests (all of them when -1), then 204."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.secret = ""
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    StandardWebhook(receiver.secret).verify(raw, headers)
                    verified = True
                except WebhookVerificationError:
                    verified = False
                receiver.requests.append({"raw": raw, "headers": headers, "verified": verified})
                n = len(receiver.requests)
                failing = receiver.fail_first < 0 or n <= receiver.fail_first
                code = 500 if failing or not verified else 204
                body = b'{"error": "not yet"}' if code == 500 else b""
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(fail_first: int = 0) -> Receiver:
        made.append(Receiver(fail_first))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _create(client, receiver: Receiver, types=("workflow.execution.failed",), name="hook") -> dict:
    response = client.post(
        reverse("integration-api:webhook-create"),
        {"name": name, "url": receiver.url, "event_types": list(types)},
        format="json",
    )
    assert response.status_code == 201, response.content
    receiver.secret = response.json()["secret"]
    return response.json()


def _fail_event(user, **payload):
    return event_record(
        type="workflow.execution.failed",
        actor=user,
        resource_type="workflows.workflowexecution",
        resource_id=str(uuid.uuid4()),
        message="boom",
        payload=payload,
    )


def test_create_shows_secret_once_and_never_again(client_for, developer, receiver):
    client = client_for(developer)
    created = _create(client, receiver())
    assert created["secret"].startswith("whsec_")
    assert base64.b64decode(created["secret"][6:])
    detail = client.get(reverse("integration-api:webhook-detail", args=[created["id"]]))
    assert detail.status_code == 200 and "secret" not in detail.json()
    assert created["secret"] not in detail.content.decode()
    listed = client.get(reverse("integration-api:webhook-list"))
    assert created["secret"] not in listed.content.decode()
    webhook = Webhook.objects.get(pk=created["id"])
    assert created["secret"] not in webhook.encrypted_secret
    assert decrypt(webhook.encrypted_secret) == created["secret"]


def test_create_validates_url_and_event_types(client_for, developer):
    client = client_for(developer)
    url = reverse("integration-api:webhook-create")
    bad_url = client.post(
        url, {"name": "a", "url": "http://169.254.169.254/x", "event_types": ["alert.fired"]}
    )
    assert_problem(bad_url, 400, "url")
    bad_type = client.post(url, {"name": "a", "url": "http://127.0.0.1:9/x", "event_types": ["nope.nope"]})
    assert_problem(bad_type, 400, "event_types")
    unknown_field = client.post(
        url, {"name": "a", "url": "http://127.0.0.1:9/x", "event_types": ["alert.fired"], "secret": "mine"}
    )
    assert_problem(unknown_field, 400, "secret")


def test_event_catalogue(client_for, developer):
    response = client_for(developer).get(reverse("integration-api:webhook-event-types"))
    assert response.status_code == 200
    types = {item["type"] for item in response.json()}
    assert {"workflow.execution.failed", "agent.run.failed", "alert.fired", "webhook.disabled"} <= types


def test_another_users_webhook_is_a_404(client_for, developer, other_developer, receiver):
    created = _create(client_for(developer), receiver())
    other = client_for(other_developer)
    for method, name, args in [
        ("get", "webhook-detail", [created["id"]]),
        ("patch", "webhook-detail", [created["id"]]),
        ("delete", "webhook-detail", [created["id"]]),
        ("post", "webhook-test", [created["id"]]),
        ("get", "webhook-deliveries", [created["id"]]),
    ]:
        response = getattr(other, method)(reverse(f"integration-api:{name}", args=args), {}, format="json")
        assert_problem(response, 404)
    assert created["id"] not in other.get(reverse("integration-api:webhook-list")).content.decode()
    assert Webhook.objects.filter(pk=created["id"]).exists()


def test_only_the_owners_events_are_delivered(client_for, developer, other_developer, receiver, settings):
    r = receiver()
    _create(client_for(developer), r)
    _fail_event(other_developer)
    assert not WebhookDelivery.objects.exists()
    event_record(type="alert.fired", actor=developer)  # not subscribed
    assert not WebhookDelivery.objects.exists()
    _fail_event(developer)
    assert WebhookDelivery.objects.count() == 1
    # deactivated after the delivery was queued: nothing is sent
    Webhook.objects.update(active=False)
    webhook_deliver_task(str(WebhookDelivery.objects.get().pk))
    assert r.requests == [] and WebhookDelivery.objects.get().status == "failed"


def test_delivery_is_queued_after_commit_with_ids_only(
    client_for, developer, receiver, django_capture_on_commit_callbacks, monkeypatch
):
    r = receiver()
    created = _create(client_for(developer), r)
    sent = []
    monkeypatch.setattr(webhook_deliver_task, "apply_async", lambda args, **kw: sent.append((args, kw)))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _fail_event(developer, token="visible-in-events")
        assert sent == []  # nothing is sent before the commit
    for callback in callbacks:
        callback()
    delivery = WebhookDelivery.objects.get()
    assert sent == [([str(delivery.pk)], {"countdown": 0})]
    assert created["secret"] not in json.dumps(sent)


def test_retries_until_the_receiver_accepts(client_for, developer, receiver, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [5, 30, 120, 600]
    r = receiver(fail_first=2)
    created = _create(client_for(developer), r)
    event = _fail_event(developer, step="fetch")
    delivery = WebhookDelivery.objects.get()
    attempts = []
    started = time.time()
    while delivery is not None:  # drive each attempt here instead of waiting for countdowns
        attempts.append(delivery)
        webhook_deliver_task(str(delivery.pk))
        delivery = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).first()
    rows = list(WebhookDelivery.objects.order_by("attempt"))
    assert [(d.attempt, d.status, d.response_code) for d in rows] == [
        (1, "failed", 500),
        (2, "failed", 500),
        (3, "succeeded", 204),
    ]
    assert rows[0].response_body == '{"error": "not yet"}' and rows[0].duration_ms is not None
    # backoff with jitter: the second attempt was due 5 s ± 20 %, the third 30 s ± 20 % later
    assert 4 <= (rows[1].next_attempt_at.timestamp() - started) <= 6 + (time.time() - started)
    assert 24 <= (rows[2].next_attempt_at.timestamp() - started) <= 36 + (time.time() - started)
    assert len(r.requests) == 3 and all(req["verified"] for req in r.requests)
    assert {req["headers"]["webhook-id"] for req in r.requests} == {rows[0].message_id}
    body = json.loads(r.requests[-1]["raw"])
    assert body["type"] == "workflow.execution.failed"
    assert body["data"]["event_id"] == str(event.pk) and body["data"]["details"] == {"step": "fetch"}
    assert Webhook.objects.get(pk=created["id"]).failure_count == 0
    # the delivery's own record: a repeated task for a finished attempt does nothing
    webhook_deliver_task(str(rows[-1].pk))
    assert len(r.requests) == 3
    listed = client_for(developer).get(reverse("integration-api:webhook-deliveries", args=[created["id"]]))
    assert listed.status_code == 200
    assert [d["attempt"] for d in listed.json()["results"]] == [3, 2, 1]


def test_always_failing_receiver_disables_the_webhook_and_tells_the_owner(
    client_for, developer, receiver, settings
):
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 3
    settings.WEBHOOK_RETRY_SCHEDULE = [1, 1, 1, 1, 1]
    r = receiver(fail_first=-1)
    created = _create(client_for(developer), r)
    _fail_event(developer)
    while (delivery := WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).first()) is not None:
        services.webhook_deliver(delivery=delivery)
    webhook = Webhook.objects.get(pk=created["id"])
    assert not webhook.active and webhook.disabled_at is not None and webhook.failure_count == 3
    assert "3 consecutive failed deliveries" in webhook.disabled_reason
    assert WebhookDelivery.objects.filter(status="failed").count() == 3 and len(r.requests) == 3
    disabled = ObservabilityEvent.objects.get(type="webhook.disabled")
    assert disabled.actor_id == developer.pk and disabled.resource_id == str(webhook.pk)
    _fail_event(developer)  # a disabled webhook receives nothing more
    assert WebhookDelivery.objects.count() == 3
    # re-activating clears the run of failures
    client_for(developer).patch(
        reverse("integration-api:webhook-detail", args=[created["id"]]), {"active": True}, format="json"
    )
    webhook.refresh_from_db()
    assert webhook.active and webhook.failure_count == 0 and webhook.disabled_at is None


def test_test_endpoint_and_redelivery(client_for, developer, receiver, django_capture_on_commit_callbacks):
    r = receiver()
    client = client_for(developer)
    created = _create(client, r)
    tested = client.post(reverse("integration-api:webhook-test", args=[created["id"]]))
    assert tested.status_code == 200, tested.content
    assert tested.json()["status"] == "succeeded" and tested.json()["event_type"] == "webhook.test"
    assert r.requests[0]["verified"]
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(
            reverse("integration-api:webhook-redeliver", args=[created["id"], tested.json()["id"]])
        )
    assert again.status_code == 202
    assert WebhookDelivery.objects.get(pk=again.json()["id"]).status == "succeeded"
    assert len(r.requests) == 2 and r.requests[1]["headers"]["webhook-id"] == tested.json()["message_id"]


def test_secrets_never_in_payloads_or_task_args(client_for, developer, receiver, monkeypatch):
    from masterdata.services import secret_create

    r = receiver()
    created = _create(client_for(developer), r)
    secret_value = "sk-live-" + uuid.uuid4().hex
    secret_create(owner=developer, name="api-key", value=secret_value)
    sent = []
    monkeypatch.setattr(
        webhook_deliver_task, "apply_async", lambda args, **kw: sent.append(json.dumps([args, kw]))
    )
    with pytest.MonkeyPatch.context():
        from django.db import transaction

        monkeypatch.setattr(transaction, "on_commit", lambda fn, *a, **k: fn())
        _fail_event(developer)
        delivery = WebhookDelivery.objects.get()
        services.webhook_deliver(delivery=delivery)
    sent_bytes = "".join(sent).encode()
    for needle in (created["secret"], created["secret"][6:], secret_value):
        assert needle.encode() not in r.requests[0]["raw"]
        assert needle.encode() not in json.dumps(delivery.payload).encode()
        assert needle.encode() not in sent_bytes
    assert sent  # the task was queued, with the delivery id only
    webhook = Webhook.objects.get(pk=created["id"])
    events = json.dumps(list(ObservabilityEvent.objects.values("payload", "message")), default=str).encode()
    assert created["secret"].encode() not in events and webhook.encrypted_secret.encode() not in events
    assert json.loads(sent[0])[0] == [str(delivery.pk)]


# --- inbound triggers ----------------------------------------------------------------------------
WORKFLOW = {
    "nodes": [{"id": "a", "type": "transform", "config": {"template": "{{ inputs.city }}"}}],
    "edges": [],
    "inputs": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}},
}


@pytest.fixture
def workflow(developer):
    return workflow_services.workflow_create(owner=developer, name="on-call", definition=WORKFLOW)


def _trigger(client, workflow, signed=True) -> dict:
    response = client.post(
        reverse("integration-api:trigger-list"),
        {"name": "t", "workflow": str(workflow.pk), "signed": signed},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def _hook(token: str) -> str:
    return reverse("integration-api:trigger-hook", args=[token])


def test_trigger_with_good_and_bad_signatures(api_client, client_for, developer, workflow):
    created = _trigger(client_for(developer), workflow)
    assert created["url"].endswith(f"/api/v1/integration/hooks/{created['token']}")
    assert created["secret"].startswith("whsec_")
    signer = StandardWebhook(created["secret"])
    body = json.dumps({"city": "Oslo"})
    msg_id = "msg_1"
    now = __import__("datetime").datetime.now(tz=__import__("datetime").UTC)
    good = {
        "HTTP_WEBHOOK_ID": msg_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(int(now.timestamp())),
        "HTTP_WEBHOOK_SIGNATURE": signer.sign(msg_id, now, body),
    }
    response = api_client.post(_hook(created["token"]), body, content_type="application/json", **good)
    assert response.status_code == 202, response.content
    execution = WorkflowExecution.objects.get(pk=response.json()["execution_id"])
    assert execution.inputs == {"city": "Oslo"} and execution.user_id == developer.pk
    # the same signed message again is the same execution (webhook-id as idempotency key)
    again = api_client.post(_hook(created["token"]), body, content_type="application/json", **good)
    assert again.status_code == 202 and again.json()["execution_id"] == str(execution.pk)
    assert again.json()["created"] is False

    tampered = api_client.post(
        _hook(created["token"]), json.dumps({"city": "Bergen"}), content_type="application/json", **good
    )
    assert_problem(tampered, 401)
    missing = api_client.post(_hook(created["token"]), body, content_type="application/json")
    assert_problem(missing, 401)
    wrong_key = StandardWebhook(services.new_secret())
    bad = {**good, "HTTP_WEBHOOK_SIGNATURE": wrong_key.sign(msg_id, now, body)}
    assert_problem(
        api_client.post(_hook(created["token"]), body, content_type="application/json", **bad), 401
    )
    old = now - __import__("datetime").timedelta(minutes=10)
    expired = {
        **good,
        "HTTP_WEBHOOK_TIMESTAMP": str(int(old.timestamp())),
        "HTTP_WEBHOOK_SIGNATURE": signer.sign(msg_id, old, body),
    }
    assert_problem(
        api_client.post(_hook(created["token"]), body, content_type="application/json", **expired), 401
    )
    assert WorkflowExecution.objects.count() == 1
    assert_problem(api_client.post(_hook("wht_nope"), body, content_type="application/json"), 404)


def test_unsigned_trigger_validates_inputs(api_client, client_for, developer, workflow):
    created = _trigger(client_for(developer), workflow, signed=False)
    assert created["secret"] == "" and created["has_secret"] is False
    bad = api_client.post(_hook(created["token"]), {"town": "Oslo"}, format="json")
    assert_problem(bad, 400)
    assert "city" in bad.content.decode()
    ok = api_client.post(_hook(created["token"]), {"city": "Oslo"}, format="json")
    assert ok.status_code == 202
    trigger = WorkflowTrigger.objects.get(pk=created["id"])
    assert trigger.trigger_count == 1 and created["token"] not in trigger.token_hash
    detail = client_for(developer).get(reverse("integration-api:trigger-detail", args=[created["id"]]))
    assert detail.status_code == 200 and created["token"] not in detail.content.decode()


def test_triggers_are_the_workflow_owners(client_for, developer, other_developer, workflow):
    created = _trigger(client_for(developer), workflow)
    other = client_for(other_developer)
    assert_problem(other.get(reverse("integration-api:trigger-detail", args=[created["id"]])), 404)
    assert_problem(other.delete(reverse("integration-api:trigger-detail", args=[created["id"]])), 404)
    refused = other.post(
        reverse("integration-api:trigger-list"), {"name": "x", "workflow": str(workflow.pk)}, format="json"
    )
    assert_problem(refused, 400, "workflow")
    gone = client_for(developer).delete(reverse("integration-api:trigger-detail", args=[created["id"]]))
    assert gone.status_code == 204


def test_real_events_reach_the_webhook(client_for, developer, receiver, django_capture_on_commit_callbacks):
    """Events the apps really record: a workflow waiting for approval, then succeeding after the
    approval; an agent run finishing. Delivered by the task after commit (eager here)."""
    from integration.services import demo_seed

    r = receiver()
    client = client_for(developer)
    _create(
        client,
        r,
        types=["workflow.execution.waiting_approval", "workflow.execution.succeeded", "agent.run.succeeded"],
    )
    approval = {
        "nodes": [
            {"id": "ok", "type": "approval", "config": {}},
            {"id": "after", "type": "transform", "config": {"template": "1"}},
        ],
        "edges": [{"source": "ok", "target": "after"}],
    }
    wf = workflow_services.workflow_create(owner=developer, name="needs-ok", definition=approval)
    with django_capture_on_commit_callbacks(execute=True):
        execution, _ = workflow_services.workflow_execute(workflow=wf, user=developer, inputs={})
    execution.refresh_from_db()
    assert execution.status == "waiting"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("workflows-api:execution-approve", args=[execution.pk]), {}, format="json"
        )
    assert response.status_code in (200, 202), response.content
    demo_seed(owner=developer)
    agent = client.get("/api/v1/agents", {"search": "echo-assistant"}).json()["results"][0]
    with django_capture_on_commit_callbacks(execute=True):
        run = client.post(f"/api/v1/agents/{agent['id']}/interact", {"input": "hello"}, format="json")
    assert run.status_code in (200, 201), run.content
    received = [json.loads(req["raw"])["type"] for req in r.requests]
    assert received == [
        "workflow.execution.waiting_approval",
        "workflow.execution.succeeded",
        "agent.run.succeeded",
    ]
    assert all(req["verified"] for req in r.requests)
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}


def test_rotate_command_re_encrypts_webhook_and_trigger_secrets(settings, developer, workflow):
    from io import StringIO

    from cryptography.fernet import Fernet
    from django.core.management import call_command

    old_key = settings.FERNET_KEYS[0]
    webhook, secret = services.webhook_create(
        owner=developer, name="w", url="http://127.0.0.1:9/x", event_types=["alert.fired"]
    )
    trigger, _, trigger_secret = services.trigger_create(workflow=workflow, actor=developer, name="t")
    new_key = Fernet.generate_key().decode()
    settings.FERNET_KEYS = [new_key, old_key]
    out = StringIO()
    call_command("rotate_webhook_secret_keys", stdout=out)
    assert "Re-encrypted 2 " in out.getvalue()
    settings.FERNET_KEYS = [new_key]
    webhook.refresh_from_db()
    trigger.refresh_from_db()
    assert decrypt(webhook.encrypted_secret) == secret
    assert decrypt(trigger.encrypted_secret) == trigger_secret


def test_model_clean_checks_url_and_event_types(developer):
    from django.core.exceptions import ValidationError

    webhook = Webhook(owner=developer, name="x", url="http://169.254.169.254/", event_types=["nope"])
    with pytest.raises(ValidationError) as caught:
        webhook.clean()
    assert {"url", "event_types"} <= set(caught.value.message_dict)


def test_admin_pages_and_redeliver_action(
    client, make_user, developer, receiver, workflow, django_capture_on_commit_callbacks
):
    from agentmesh.accounts.models import Role

    r = receiver()
    webhook, r.secret = services.webhook_create(
        owner=developer, name="w", url=r.url, event_types=["workflow.execution.failed"]
    )
    services.trigger_create(workflow=workflow, actor=developer, name="t")
    delivery = services.webhook_test(webhook=webhook)
    client.force_login(make_user(Role.ADMIN, is_staff=True, is_superuser=True))
    for name in ("webhook", "webhookdelivery", "workflowtrigger"):
        page = client.get(reverse(f"admin:integration_{name}_changelist"))
        assert page.status_code == 200, name
    change = client.get(reverse("admin:integration_webhook_change", args=[webhook.pk]))
    assert change.status_code == 200
    assert r.secret not in change.content.decode() and "webhook.test" in change.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(
            reverse("admin:integration_webhookdelivery_changelist"),
            {"action": "redeliver", "_selected_action": [str(delivery.pk)]},
        )
    assert done.status_code == 302
    assert WebhookDelivery.objects.filter(message_id=delivery.message_id, status="succeeded").count() == 2
    assert len(r.requests) == 2 and all(req["verified"] for req in r.requests)


def test_trigger_hook_is_throttled(api_client, client_for, developer, workflow, settings):
    settings.TRIGGER_THROTTLE_RATE = "2/minute"
    created = _trigger(client_for(developer), workflow, signed=False)
    for _ in range(2):
        assert api_client.post(_hook(created["token"]), {"city": "Oslo"}, format="json").status_code == 202
    assert_problem(api_client.post(_hook(created["token"]), {"city": "Oslo"}, format="json"), 429)
    assert_problem(api_client.post(_hook("wht_guess"), {"city": "Oslo"}, format="json"), 429)


def test_events_nobody_subscribes_to_cost_no_query_and_a_new_webhook_counts_at_once(developer):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from integration.models import Webhook
    from integration.services import webhooks as service

    service.subscriptions_clear()
    assert not service.is_subscribed(developer.pk, "alert.fired")  # loads the subscriptions once
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert not service.is_subscribed(developer.pk, "alert.fired")
    assert len(queries) == 0
    Webhook.objects.create(
        owner=developer, name="new", url="https://hooks.example.com/in", event_types=["alert.fired"]
    )
    assert service.is_subscribed(developer.pk, "alert.fired")
    assert not service.is_subscribed(developer.pk, "alert.resolved")
