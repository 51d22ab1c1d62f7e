"""Outbound webhooks (Standard Webhooks signatures, retries with backoff, auto-disable) and
inbound workflow triggers.

Events reach webhooks through one hook: a post_save receiver on observability's event model,
connected in integration/apps.py (observability never imports integration). A webhook
receives the events whose actor is its owner; admins too receive only their own events.
"""

import base64
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from agentmesh.core import crypto
from agentmesh.core.audit import audited
from agentmesh.core.exceptions import ServiceValidationError
from agentmesh.core.features import flag_is_active, require_feature
from agentmesh.core.safe_http import SafeHTTPError, safe_request
from agentmesh.core.signals import snapshot
from observability.services import event_record

from ..models import DeliveryStatus, Webhook, WebhookDelivery, WorkflowTrigger

logger = logging.getLogger("integration.webhooks")

# The event types a webhook may subscribe to: the events the other apps record, by name.
EVENT_CATALOGUE: dict[str, str] = {
    "agent.run.succeeded": "An agent run finished successfully.",
    "agent.run.failed": "An agent run failed.",
    "agent.run.incomplete": "An agent run ended early on a limit (turns, tokens, time, cost).",
    "agent.deployed": "An agent was deployed (a new immutable version).",
    "agent.undeployed": "An agent was undeployed.",
    "agent.deploy_failed": "An agent's deploy check failed.",
    "tool.deployed": "A tool was deployed.",
    "tool.undeployed": "A tool was undeployed.",
    "tool.execution.failed": "A tool execution failed.",
    "workflow.execution.started": "A workflow execution started.",
    "workflow.execution.succeeded": "A workflow execution finished successfully.",
    "workflow.execution.failed": "A workflow execution failed.",
    "workflow.execution.cancelled": "A workflow execution was cancelled.",
    "workflow.execution.timed_out": "A workflow execution exceeded its deadline.",
    "workflow.execution.waiting_approval": "A workflow execution is waiting for an approval.",
    "workflow.approval.approved": "A waiting approval step was approved.",
    "workflow.approval.rejected": "A waiting approval step was rejected.",
    "alert.fired": "An alert fired.",
    "alert.resolved": "An alert was resolved.",
    "webhook.disabled": "One of your webhooks was disabled after repeated failed deliveries.",
}
TEST_EVENT = "webhook.test"

# Which users subscribe to which event types, kept per process for a few seconds: events are
# recorded on hot paths (every agent run, every workflow step's end), and most users have no
# webhook, so most events must cost no query. A webhook saved or deleted in this process
# clears it at once (IntegrationConfig.ready); other processes see it within the interval.
SUBSCRIPTIONS_CACHE_SECONDS = 5.0
_subscriptions: dict = {"at": float("-inf"), "by_type": {}}


def subscriptions_clear(**_kwargs) -> None:
    _subscriptions["at"] = float("-inf")


def is_subscribed(user_id, event_type: str) -> bool:
    """Whether an active webhook of `user_id` subscribes to `event_type` (cached, see above)."""
    if user_id is None or event_type not in EVENT_CATALOGUE:
        return False
    now = time.monotonic()
    if now - _subscriptions["at"] > SUBSCRIPTIONS_CACHE_SECONDS:
        by_type: dict[str, set] = {}
        for owner_id, event_types in Webhook.objects.filter(active=True).values_list(
            "owner_id", "event_types"
        ):
            for name in event_types or ():
                by_type.setdefault(name, set()).add(owner_id)
        _subscriptions.update(at=now, by_type=by_type)
    return user_id in _subscriptions["by_type"].get(event_type, ())


SECRET_PREFIX = "whsec_"
RESPONSE_BODY_LIMIT = 2000


def retry_schedule() -> list[float]:
    """Seconds to wait before attempt 2, 3, … (jitter is added on top)."""
    return list(getattr(settings, "WEBHOOK_RETRY_SCHEDULE", [5, 30, 120, 600, 3600, 4 * 3600, 8 * 3600]))


def disable_after() -> int:
    return int(getattr(settings, "WEBHOOK_DISABLE_AFTER_FAILURES", 15))


def delivery_timeout() -> float:
    return float(getattr(settings, "WEBHOOK_TIMEOUT_SECONDS", 10))


# --- Standard Webhooks signatures ------------------------------------------------------------
def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` (https://www.standardwebhooks.com)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()


def verify(*, secret: str, headers, body: bytes, tolerance: int = 300) -> bool:
    """True when `headers` carry a valid, fresh Standard Webhooks signature of `body`."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    given = headers.get("webhook-signature", "")
    if not (msg_id and stamp.isdigit() and given):
        return False
    if abs(time.time() - int(stamp)) > tolerance:
        return False
    expected = sign(secret=secret, msg_id=msg_id, timestamp=int(stamp), body=body).split(",", 1)[1]
    for candidate in given.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


# --- webhooks ----------------------------------------------------------------------------------
def _check_event_types(event_types: list[str]) -> list[str]:
    if not event_types:
        raise ServiceValidationError("Subscribe to at least one event type.", field="event_types")
    unknown = sorted(set(event_types) - set(EVENT_CATALOGUE))
    if unknown:
        raise ServiceValidationError(
            f"Unknown event type(s): {', '.join(unknown)}. See GET /api/v1/integration/webhook-event-types.",
            field="event_types",
            code="unknown_event_type",
        )
    return sorted(set(event_types))


def _check_url(url: str) -> None:
    from observability.models import webhook_url_problem

    problem = webhook_url_problem(url)
    if problem:
        raise ServiceValidationError(problem, field="url", code="unsafe_url")


@transaction.atomic
def webhook_create(
    *, owner, name: str, url: str, event_types: list[str], description: str = "", active: bool = True
) -> tuple[Webhook, str]:
    """Create a webhook; returns it and its `whsec_` secret (shown to the caller this once)."""
    _check_url(url)
    if Webhook.objects.filter(owner=owner, name=name).exists():
        raise ServiceValidationError(
            "You already have a webhook with this name.", field="name", code="unique"
        )
    secret = new_secret()
    webhook = Webhook.objects.create(
        owner=owner,
        name=name,
        description=description,
        url=url,
        event_types=_check_event_types(event_types),
        active=active,
        encrypted_secret=crypto.encrypt(secret),
        secret_mask=crypto.mask(secret),
    )
    audited("create", webhook, actor=owner)
    return webhook, secret


@transaction.atomic
def webhook_update(*, webhook: Webhook, actor=None, **changes) -> Webhook:
    """Change name, description, url, event types or active. Re-activating clears the failure run."""
    before = snapshot(webhook)
    if "url" in changes:
        _check_url(changes["url"])
    if "event_types" in changes:
        changes["event_types"] = _check_event_types(changes["event_types"])
    if (
        "name" in changes
        and Webhook.objects.filter(owner=webhook.owner, name=changes["name"]).exclude(pk=webhook.pk).exists()
    ):
        raise ServiceValidationError(
            "You already have a webhook with this name.", field="name", code="unique"
        )
    for field in ("name", "description", "url", "event_types", "active"):
        if field in changes:
            setattr(webhook, field, changes[field])
    if changes.get("active") and webhook.disabled_at:
        webhook.disabled_at, webhook.disabled_reason, webhook.failure_count = None, "", 0
    webhook.save()
    audited("update", webhook, before=before, actor=actor)
    return webhook


def webhook_secret(webhook: Webhook) -> str:
    return crypto.decrypt(webhook.encrypted_secret)


def _message(event_type: str, data: dict, timestamp) -> dict:
    """The Standard Webhooks payload shape: type, timestamp, data. No secret ever goes in."""
    return json.loads(
        json.dumps(
            {"type": event_type, "timestamp": timestamp, "data": data}, cls=DjangoJSONEncoder, default=str
        )
    )


def _enqueue(delivery: WebhookDelivery, countdown: float = 0) -> None:
    from ..tasks.webhooks import webhook_deliver_task

    delivery_id = str(delivery.pk)
    transaction.on_commit(lambda: webhook_deliver_task.apply_async(args=[delivery_id], countdown=countdown))


def webhooks_dispatch_event(*, event) -> list[WebhookDelivery]:
    """Queue a delivery of `event` (an observability event) to each active webhook of its actor
    subscribed to its type. Sent after the event's transaction commits."""
    if not is_subscribed(event.actor_id, event.type):
        return []
    webhooks = [
        w
        for w in Webhook.objects.filter(owner_id=event.actor_id, active=True).select_related("owner")
        if event.type in w.event_types
    ]
    if not webhooks or not flag_is_active("webhooks", webhooks[0].owner):  # feature flag: none sent
        return []
    payload = _message(
        event.type,
        {
            "event_id": str(event.pk),
            "resource_type": event.resource_type,
            "resource_id": event.resource_id,
            "level": event.level,
            "source": event.source,
            "message": event.message,
            "trace_id": event.trace_id,
            **{"details": event.payload or {}},
        },
        event.timestamp,
    )
    deliveries = []
    for webhook in webhooks:
        delivery = WebhookDelivery.objects.create(
            webhook=webhook,
            message_id=f"msg_{uuid.uuid4().hex}",
            event_id=event.pk,
            event_type=event.type,
            payload=payload,
        )
        _enqueue(delivery)
        deliveries.append(delivery)
    return deliveries


def _jittered(seconds: float) -> float:
    return seconds * random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not a secret)


def webhook_deliver(*, delivery: WebhookDelivery, retry: bool = True) -> WebhookDelivery | None:
    """Make the pending attempt `delivery`: POST the signed payload through the safe client and
    record the outcome. On failure, schedule the next attempt (returned) unless attempts are
    exhausted or the webhook is disabled by this failure; returns None otherwise."""
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self", "webhook"))
            .select_related("webhook", "webhook__owner")
            .get(pk=delivery.pk)
        )
        if delivery.status != DeliveryStatus.PENDING:
            return None
        webhook = delivery.webhook
        if not flag_is_active("webhooks", webhook.owner):  # switched off since it was queued
            delivery.status = DeliveryStatus.FAILED
            delivery.error = "Webhook deliveries are disabled (feature flag 'webhooks')."
            delivery.save(update_fields=["status", "error", "updated_at"])
            return None
        if not webhook.active and delivery.event_type != TEST_EVENT:  # deactivated since it was queued
            delivery.status, delivery.error = DeliveryStatus.FAILED, "The webhook is inactive."
            delivery.save(update_fields=["status", "error", "updated_at"])
            return None
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    stamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "AgentMesh-Webhooks/1",
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(
            secret=webhook_secret(webhook), msg_id=delivery.message_id, timestamp=stamp, body=body
        ),
    }
    started = time.perf_counter()
    code, text, error = None, "", ""
    try:
        response = safe_request(
            "POST", webhook.url, content=body, headers=headers, timeout=delivery_timeout()
        )
        code, text = response.status_code, response.text[:RESPONSE_BODY_LIMIT]
        ok = response.is_success
        if not ok:
            error = f"HTTP {code}"
    except SafeHTTPError as exc:
        ok, error = False, f"{type(exc).__name__}: {exc}"[:500]
    duration = (time.perf_counter() - started) * 1000
    with transaction.atomic():
        webhook = Webhook.objects.select_for_update().get(pk=webhook.pk)
        delivery.status = DeliveryStatus.SUCCEEDED if ok else DeliveryStatus.FAILED
        delivery.response_code, delivery.response_body, delivery.error = code, text, error
        delivery.duration_ms, delivery.attempted_at = duration, timezone.now()
        delivery.save()
        if ok:
            if webhook.failure_count:
                Webhook.objects.filter(pk=webhook.pk).update(failure_count=0)
            return None
        webhook.failure_count += 1
        Webhook.objects.filter(pk=webhook.pk).update(failure_count=webhook.failure_count)
        if webhook.active and webhook.failure_count >= disable_after():
            _disable(webhook, f"{webhook.failure_count} consecutive failed deliveries; last: {error}"[:300])
            return None
        schedule = retry_schedule()
        if not retry or not webhook.active or delivery.attempt > len(schedule):
            return None
        wait = _jittered(schedule[delivery.attempt - 1])
        follow = WebhookDelivery.objects.create(
            webhook=webhook,
            message_id=delivery.message_id,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            payload=delivery.payload,
            attempt=delivery.attempt + 1,
            next_attempt_at=timezone.now() + timedelta(seconds=wait),
        )
        _enqueue(follow, countdown=wait)
        return follow


def _disable(webhook: Webhook, reason: str) -> None:
    before = snapshot(webhook)
    webhook.active, webhook.disabled_at, webhook.disabled_reason = False, timezone.now(), reason
    webhook.save(update_fields=["active", "disabled_at", "disabled_reason", "updated_at"])
    webhook.deliveries.filter(status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.FAILED, error="Disabled."
    )
    audited("update", webhook, before=before, actor=webhook.owner)
    event_record(
        type="webhook.disabled",
        level="warning",
        source="integration",
        actor=webhook.owner_id,
        resource=webhook,
        message=f"Webhook {webhook.name} was disabled: {reason}"[:500],
        payload={"webhook_id": str(webhook.pk), "failure_count": webhook.failure_count},
    )


def webhook_test(*, webhook: Webhook, actor=None) -> WebhookDelivery:
    """Send a `webhook.test` message now (one attempt, no retry) and return the recorded attempt."""
    require_feature("webhooks", webhook.owner)
    delivery = WebhookDelivery.objects.create(
        webhook=webhook,
        message_id=f"msg_{uuid.uuid4().hex}",
        event_type=TEST_EVENT,
        payload=_message(
            TEST_EVENT, {"webhook_id": str(webhook.pk), "message": "A test from Agent Mesh."}, timezone.now()
        ),
    )
    audited("test", webhook, actor=actor, details={"delivery": str(delivery.pk)})
    webhook_deliver(delivery=delivery, retry=False)
    delivery.refresh_from_db()
    return delivery


@transaction.atomic
def webhook_redeliver(*, delivery: WebhookDelivery, actor=None) -> WebhookDelivery:
    """Send the message of `delivery` again (same `webhook-id`), as a new first attempt queued now."""
    require_feature("webhooks", delivery.webhook.owner)
    again = WebhookDelivery.objects.create(
        webhook=delivery.webhook,
        message_id=delivery.message_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        payload=delivery.payload,
    )
    audited(
        "redeliver",
        delivery.webhook,
        actor=actor,
        details={"delivery": str(delivery.pk), "new": str(again.pk)},
    )
    _enqueue(again)
    return again


# --- inbound triggers ----------------------------------------------------------------------------
def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def trigger_create(*, workflow, actor, name: str, signed: bool = True) -> tuple[WorkflowTrigger, str, str]:
    """A trigger URL for `workflow`, owned by the workflow's owner. Returns the trigger, its token
    and (when `signed`) its `whsec_` secret: both shown this once."""
    token = "wht_" + secrets.token_urlsafe(32)
    secret = new_secret() if signed else ""
    trigger = WorkflowTrigger.objects.create(
        owner=workflow.owner,
        workflow=workflow,
        name=name,
        token_hash=_token_hash(token),
        token_prefix=token[:12],
        encrypted_secret=crypto.encrypt(secret) if secret else "",
    )
    audited("create", trigger, actor=actor)
    return trigger, token, secret


def trigger_by_token(token: str) -> WorkflowTrigger | None:
    return (
        WorkflowTrigger.objects.select_related("workflow", "owner")
        .filter(token_hash=_token_hash(token), active=True)
        .first()
    )


class SignatureRejected(Exception):
    pass


def trigger_fire(*, trigger: WorkflowTrigger, body: bytes, headers):
    """Verify the signature (when the trigger has a secret), then start an execution of the
    workflow as the trigger's owner with the JSON body as inputs. Raises SignatureRejected, or
    ServiceValidationError for a body that is not a JSON object or inputs the schema refuses."""
    from workflows.services import workflow_execute

    if trigger.encrypted_secret and not verify(
        secret=crypto.decrypt(trigger.encrypted_secret), headers=headers, body=body
    ):
        raise SignatureRejected("Missing, invalid or expired webhook signature.")
    try:
        inputs = json.loads(body or b"{}")
    except ValueError as exc:
        raise ServiceValidationError(
            f"The body is not JSON: {exc}", field="body", code="parse_error"
        ) from exc
    if not isinstance(inputs, dict):
        raise ServiceValidationError("The body must be a JSON object of inputs.", field="body")
    idempotency_key = ""
    if trigger.encrypted_secret:
        idempotency_key = f"trigger:{trigger.pk}:{headers.get('webhook-id', '')}"[:200]
    execution, created = workflow_execute(
        workflow=trigger.workflow, user=trigger.owner, inputs=inputs, idempotency_key=idempotency_key
    )
    WorkflowTrigger.objects.filter(pk=trigger.pk).update(
        last_triggered_at=timezone.now(), trigger_count=trigger.trigger_count + 1
    )
    return execution, created


@transaction.atomic
def webhook_secret_keys_rotate() -> int:
    """Re-encrypt every webhook and trigger secret under the first key of FERNET_KEYS (run with
    masterdata's rotate_secret_keys); all or nothing. Returns how many were re-encrypted."""
    count = 0
    for model in (Webhook, WorkflowTrigger):
        rows = list(
            model.objects.select_for_update().exclude(encrypted_secret="").only("pk", "encrypted_secret")
        )
        for row in rows:
            try:
                row.encrypted_secret = crypto.rotate(row.encrypted_secret)
            except crypto.DecryptionError as exc:
                raise crypto.DecryptionError(
                    f"{model.__name__} {row.pk} does not decrypt with any configured key."
                ) from exc
        model.objects.bulk_update(rows, ["encrypted_secret"], batch_size=500)
        count += len(rows)
    return count
