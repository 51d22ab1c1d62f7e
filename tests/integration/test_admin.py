"""Integration in the admin: deliveries and jobs are history (view only); redelivery, the test
message and the connection check are confirmed actions that call the services, audited."""

import pytest
from django.test import Client

from agentmesh.accounts.models import Role
from integration.models import IntegrationJob, Webhook, WebhookDelivery, WorkflowTrigger
from integration.services import webhooks as services
from observability.models import ObservabilityEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_developer(make_user):
    from django.contrib.auth.models import Permission

    user = make_user(Role.DEVELOPER, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_webhookdelivery"]))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def delivery(developer):
    webhook, _ = services.webhook_create(
        owner=developer, name="hook", url="http://127.0.0.1:9/hook", event_types=["workflow.execution.failed"]
    )
    return WebhookDelivery.objects.create(
        webhook=webhook,
        message_id="msg_1",
        event_type="workflow.execution.failed",
        payload={"type": "workflow.execution.failed", "data": {"n": 1}},
        status="failed",
        response_code=500,
        error="HTTP 500",
        duration_ms=1234.5,
    )


def _actions(response) -> list[str]:
    form = response.context["action_form"]
    return [value for value, _ in form.fields["action"].choices] if form else []


def test_deliveries_are_history(operator, delivery):
    base = "/admin/integration/webhookdelivery/"
    listed = operator.get(base)
    assert listed.status_code == 200
    assert "delete_selected" not in _actions(listed) and "redeliver" in _actions(listed)
    assert "1.2 s" in listed.content.decode()  # human duration
    assert operator.get(f"{base}add/").status_code == 403
    assert operator.get(f"{base}{delivery.pk}/delete/").status_code == 403
    assert operator.post(f"{base}{delivery.pk}/change/", {"status": "succeeded"}).status_code == 403
    detail = operator.get(f"{base}{delivery.pk}/change/")
    assert detail.status_code == 200 and detail.context["has_change_permission"] is False
    assert "&quot;n&quot;: 1" in detail.content.decode()  # the payload, pretty-printed
    delivery.refresh_from_db()
    assert delivery.status == "failed"


def test_redeliver_from_the_delivery_page(operator, delivery, django_capture_on_commit_callbacks):
    url = f"/admin/integration/webhookdelivery/{delivery.pk}/do/redeliver/"
    assert url in operator.get(f"/admin/integration/webhookdelivery/{delivery.pk}/change/").content.decode()
    assert operator.get(url).status_code == 200
    assert WebhookDelivery.objects.count() == 1  # the confirmation page sends nothing

    with django_capture_on_commit_callbacks(execute=False) as queued:
        done = operator.post(url, follow=True)
    assert "queued again" in done.content.decode()
    again = WebhookDelivery.objects.exclude(pk=delivery.pk).get()
    assert (again.message_id, again.status, again.attempt) == ("msg_1", "pending", 1)
    assert len(queued) == 1  # the delivery task, after commit
    audit = ObservabilityEvent.objects.get(type="audit.redeliver")
    assert audit.payload["channel"] == "admin" and audit.actor == operator.user
    assert audit.payload["new"] == str(again.pk)


def test_bulk_redeliver_and_the_search_by_webhook_id(operator, delivery, django_capture_on_commit_callbacks):
    base = "/admin/integration/webhookdelivery/"
    found = operator.get(base, {"q": str(delivery.webhook_id)}).context["cl"].result_list
    assert [d.pk for d in found] == [delivery.pk]
    with django_capture_on_commit_callbacks(execute=False):
        response = operator.post(
            base, {"action": "redeliver", "_selected_action": [delivery.pk]}, follow=True
        )
    assert "1 message(s) queued again." in response.content.decode()
    assert WebhookDelivery.objects.filter(message_id="msg_1").count() == 2


def test_staff_who_is_not_a_platform_admin_cannot_redeliver(staff_developer, delivery):
    url = f"/admin/integration/webhookdelivery/{delivery.pk}/do/redeliver/"
    assert staff_developer.get(url).status_code == 403
    assert staff_developer.post(url).status_code == 403
    staff_developer.post(
        "/admin/integration/webhookdelivery/", {"action": "redeliver", "_selected_action": [delivery.pk]}
    )
    assert WebhookDelivery.objects.count() == 1


def test_webhooks_and_triggers_are_created_through_the_api_only(operator, delivery):
    assert operator.get("/admin/integration/webhook/add/").status_code == 403
    assert operator.get("/admin/integration/workflowtrigger/add/").status_code == 403
    page = operator.get(f"/admin/integration/webhook/{delivery.webhook_id}/change/").content.decode()
    assert f"/admin/integration/webhook/{delivery.webhook_id}/do/test/" in page
    assert Webhook.objects.count() == 1 and WorkflowTrigger.objects.count() == 0


def test_send_a_test_message_from_the_webhook_page(operator, delivery):
    url = f"/admin/integration/webhook/{delivery.webhook_id}/do/test/"
    done = operator.post(url, follow=True)
    assert done.status_code == 200
    assert "Test message sent to hook: failed" in done.content.decode()  # nothing listens on port 9
    attempt = WebhookDelivery.objects.get(event_type="webhook.test")
    assert attempt.status == "failed"
    assert ObservabilityEvent.objects.get(type="audit.test").payload["channel"] == "admin"


def test_jobs_are_history(operator, developer):
    job = IntegrationJob.objects.create(
        kind="sync_master_data",
        status="succeeded",
        owner=developer,
        params={"dry_run": True},
        report={"n": 2},
    )
    base = "/admin/integration/integrationjob/"
    listed = operator.get(base)
    assert "delete_selected" not in _actions(listed)
    assert str(job.pk)[:8] in listed.content.decode()
    assert operator.get(base, {"q": str(job.pk)[:8]}).context["cl"].result_list[0].pk == job.pk
    detail = operator.get(f"{base}{job.pk}/change/")
    assert detail.status_code == 200 and "&quot;dry_run&quot;: true" in detail.content.decode()
    assert operator.get(f"{base}{job.pk}/delete/").status_code == 403


def test_check_a_connection_from_its_page(operator, developer):
    from integration.services import connections

    connection = connections.api_connection_create(
        owner=developer, name="local", base_url="http://127.0.0.1:9/", actor=developer
    )
    url = f"/admin/integration/apiconnection/{connection.pk}/do/check/"
    assert operator.get(url).status_code == 200
    connection.refresh_from_db()
    assert connection.last_check_at is None  # confirmation first
    done = operator.post(url, follow=True)
    assert "local: failed (" in done.content.decode().lower()
    connection.refresh_from_db()
    assert connection.last_check_ok is False and connection.last_check_at is not None
    assert ObservabilityEvent.objects.get(type="audit.check").payload["channel"] == "admin"
    assert "API connections" in operator.get("/admin/integration/").content.decode()
