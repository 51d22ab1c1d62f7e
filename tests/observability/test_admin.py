"""Observability in the admin: recorded data is append-only history; alerts change only through
their confirmed actions (services, audited with channel `admin`); rules evaluate on demand."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from agentmesh.accounts.models import Role
from observability import services
from observability.models import (
    Alert,
    AlertRule,
    LogRecord,
    MetricSeries,
    ObservabilityEvent,
    RequestSample,
    Span,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_developer(make_user):
    """Staff, may view alerts and events, but not a platform admin."""
    user = make_user(Role.DEVELOPER, is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_alert", "change_alert", "view_alertrule", "view_event"]
        )
    )
    client = Client()
    client.force_login(user)
    return client


def _records(developer):
    now = timezone.now()
    event = services.event_record(type="agent.deployed", actor=developer, message="deployed")
    span = Span.objects.create(trace_id="c" * 32, span_id="d" * 16, name="llm call", start_time=now)
    log = LogRecord.objects.create(timestamp=now, level="error", levelno=40, logger="x", message="boom")
    sample = RequestSample.objects.create(timestamp=now, method="GET", route="/x", status=200, duration_ms=3)
    series = MetricSeries.objects.create(name="agentmesh_x_total", labels="{}", value=1)
    return {"event": event, "span": span, "logrecord": log, "requestsample": sample, "metricseries": series}


def _actions(changelist_response) -> list[str]:
    form = changelist_response.context["action_form"]
    return [value for value, _ in form.fields["action"].choices] if form else []


HISTORY = ["event", "observabilityevent", "span", "logrecord", "requestsample", "metricseries"]


@pytest.mark.parametrize("name", HISTORY)
def test_recorded_data_cannot_be_added_changed_or_deleted(operator, developer, name):
    obj = _records(developer)["event" if name == "observabilityevent" else name]
    base = f"/admin/observability/{name}/"
    changelist = operator.get(base)
    assert changelist.status_code == 200
    assert "delete_selected" not in _actions(changelist)
    assert operator.get(f"{base}add/").status_code == 403
    assert operator.post(f"{base}add/", {}).status_code == 403
    assert operator.get(f"{base}{obj.pk}/delete/").status_code == 403
    assert operator.post(f"{base}{obj.pk}/delete/", {"post": "yes"}).status_code == 403
    assert operator.post(
        base, {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"}
    ).status_code in (
        200,
        302,
    )
    assert type(obj).objects.filter(pk=obj.pk).exists()

    detail = operator.get(f"{base}{obj.pk}/change/")
    assert detail.status_code == 200
    page = detail.content.decode()
    assert 'name="_save"' not in page and 'name="_continue"' not in page  # read-only view
    assert detail.context["has_change_permission"] is False
    assert (
        operator.post(f"{base}{obj.pk}/change/", {"name": "changed", "message": "changed"}).status_code == 403
    )


def test_the_event_delete_page_the_browser_test_opens_is_refused(operator, developer):
    """The contract the browser test relies on: /admin/observability/event/<id>/delete/ is 403."""
    event = services.event_record(type="audit.create", actor=developer, message="kept")
    assert operator.get(f"/admin/observability/event/{event.pk}/delete/").status_code == 403
    page = operator.get("/admin/observability/event/").content.decode()
    assert 'value="delete_selected"' not in page
    assert ObservabilityEvent.objects.filter(pk=event.pk).exists()
    # the index lists Events once
    index = operator.get("/admin/").content.decode()
    assert 'href="/admin/observability/event/"' in index
    assert "/admin/observability/observabilityevent/" not in index


def test_event_page_links_its_trace_spans_and_pretty_payload(operator, developer):
    event = ObservabilityEvent.objects.create(
        timestamp=timezone.now(),
        type="tool.executed",
        trace_id="e" * 32,
        request_id="req-1",
        payload={"a": {"b": 1}},
    )
    page = operator.get(f"/admin/observability/event/{event.pk}/change/").content.decode()
    assert f"/admin/observability/span/?trace_id__exact={'e' * 32}" in page
    assert "/admin/observability/logrecord/?request_id__exact=req-1" in page
    assert "&quot;b&quot;: 1" in page  # pretty-printed (indented) JSON
    listed = operator.get(f"/admin/observability/span/?trace_id__exact={'e' * 32}")
    assert listed.status_code == 200


def test_an_event_links_the_object_it_is_about(operator, developer):
    alert = _alert(developer)
    event = ObservabilityEvent.objects.get(type="alert.fired")
    link = f'href="/admin/observability/alert/{alert.pk}/change/"'
    assert link in operator.get("/admin/observability/event/").content.decode()
    assert link in operator.get(f"/admin/observability/event/{event.pk}/change/").content.decode()
    gone = ObservabilityEvent.objects.create(
        timestamp=timezone.now(), type="x", resource_type="nowhere.thing", resource_id="1"
    )
    assert operator.get(f"/admin/observability/event/{gone.pk}/change/").status_code == 200


def test_lists_search_by_trace_request_and_id(operator, developer):
    records = _records(developer)
    span, event = records["span"], records["event"]
    found = operator.get("/admin/observability/span/", {"q": span.trace_id}).context["cl"].result_list
    assert [s.pk for s in found] == [span.pk]
    found = operator.get("/admin/observability/event/", {"q": str(event.pk)[:8]}).context["cl"].result_list
    assert event.pk in {e.pk for e in found}
    found = operator.get("/admin/observability/logrecord/", {"q": "boom"}).context["cl"].result_list
    assert [r.pk for r in found] == [records["logrecord"].pk]


def test_span_durations_and_costs_are_human(operator):
    now = timezone.now()
    Span.objects.create(
        trace_id="f" * 32,
        span_id="1" * 16,
        name="slow",
        start_time=now,
        duration_ms=7914.103000075556,
        cost_usd="0.000042",
    )
    page = operator.get("/admin/observability/span/").content.decode()
    assert "7.9 s" in page and "7.914103" not in page
    assert "$0.000042" in page


def test_metric_series_are_named_properly(operator):
    page = operator.get("/admin/observability/").content.decode()
    assert "Metric series" in page and "seriess" not in page


# --- alerts ------------------------------------------------------------------------------------
def _alert(owner, title="disk full"):
    alert, _ = services.alert_create_manual(owner=owner, title=title, severity="critical")
    return alert


def _audit(alert, action):
    return ObservabilityEvent.objects.filter(type=f"audit.{action}", resource_id=str(alert.pk)).get()


def test_acknowledge_then_resolve_from_the_alert_page(operator, developer):
    alert = _alert(developer)
    base = f"/admin/observability/alert/{alert.pk}/"
    page = operator.get(f"{base}change/").content.decode()
    assert f"{base}do/acknowledge/" in page and f"{base}do/resolve/" in page

    confirm = operator.get(f"{base}do/acknowledge/")
    assert confirm.status_code == 200 and "Yes, Acknowledge" in confirm.content.decode()
    alert.refresh_from_db()
    assert alert.state == "firing"  # the confirmation page changes nothing

    done = operator.post(f"{base}do/acknowledge/", follow=True)
    assert done.status_code == 200 and "Alert acknowledged" in done.content.decode()
    alert.refresh_from_db()
    assert alert.state == "acknowledged" and alert.acknowledged_by == operator.user
    audit = _audit(alert, "acknowledge")
    assert audit.payload["channel"] == "admin" and audit.actor == operator.user
    assert audit.payload["changes"]["state"] == "acknowledged"

    page = operator.get(f"{base}change/").content.decode()
    assert f"{base}do/acknowledge/" not in page  # no longer applies
    operator.post(f"{base}do/resolve/")
    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.resolved_by == operator.user
    assert _audit(alert, "resolve").payload["channel"] == "admin"
    assert operator.get(f"{base}do/resolve/").status_code == 404  # nothing to resolve any more
    assert operator.post(f"{base}change/", {"state": "firing"}).status_code == 403


def test_bulk_acknowledge_and_resolve_from_the_list(operator, developer):
    first, second = _alert(developer, "one"), _alert(developer, "two")
    url = "/admin/observability/alert/"
    response = operator.post(url, {"action": "acknowledge", "_selected_action": [first.pk]}, follow=True)
    assert "1 alert(s) acknowledged." in response.content.decode()
    response = operator.post(
        url, {"action": "resolve", "_selected_action": [first.pk, second.pk]}, follow=True
    )
    assert "2 alert(s) resolved." in response.content.decode()
    assert set(Alert.objects.values_list("state", flat=True)) == {"resolved"}
    assert ObservabilityEvent.objects.filter(type="audit.resolve", payload__channel="admin").count() == 2


def test_staff_who_is_not_a_platform_admin_cannot_act(staff_developer, developer):
    alert = _alert(developer)
    base = f"/admin/observability/alert/{alert.pk}/"
    assert staff_developer.get(f"{base}change/").status_code == 200
    assert f"{base}do/acknowledge/" not in staff_developer.get(f"{base}change/").content.decode()
    assert staff_developer.get(f"{base}do/acknowledge/").status_code == 403
    assert staff_developer.post(f"{base}do/acknowledge/").status_code == 403
    assert staff_developer.post(f"{base}do/resolve/").status_code == 403
    listed = staff_developer.get("/admin/observability/alert/")
    assert "acknowledge" not in _actions(listed) and "resolve" not in _actions(listed)
    staff_developer.post("/admin/observability/alert/", {"action": "resolve", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert alert.state == "firing"


def test_evaluate_a_rule_now(operator, developer):
    rule = AlertRule.objects.create(
        owner=developer, name="any event", metric="events", comparison="gte", threshold=1, window_minutes=5
    )
    services.event_record(type="agent.deployed", actor=developer)
    url = f"/admin/observability/alertrule/{rule.pk}/do/evaluate/"
    assert operator.get(url).status_code == 200 and not Alert.objects.exists()
    done = operator.post(url, follow=True)
    assert "alert firing" in done.content.decode()
    alert = Alert.objects.get(rule=rule)
    assert alert.state == "firing"
    rule.refresh_from_db()
    assert rule.last_evaluated_at > timezone.now() - timedelta(minutes=1)
