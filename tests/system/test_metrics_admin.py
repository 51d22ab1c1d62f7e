"""Admin pages of the metrics and control area: read-only history."""

from datetime import UTC, datetime

import pytest
from django.test import Client

from agentmesh.accounts.models import Role
from system.models import ControlKind, ControlRequest, MetricSample

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(make_user):
    client = Client()
    client.force_login(make_user(Role.ADMIN, is_staff=True, is_superuser=True))
    return client


def test_metric_samples_are_listed_and_never_added_changed_or_deleted(admin_client):
    sample = MetricSample.objects.create(
        metric="cpu_percent", value=12.5, taken_at=datetime(2026, 11, 30, tzinfo=UTC)
    )

    page = admin_client.get("/admin/system/metricsample/")
    assert page.status_code == 200 and b"cpu_percent" in page.content
    assert admin_client.get("/admin/system/metricsample/add/").status_code == 403
    assert (
        admin_client.post(f"/admin/system/metricsample/{sample.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert MetricSample.objects.filter(pk=sample.pk).exists()


def test_control_requests_show_the_replies_read_only(admin_client):
    record = ControlRequest.objects.create(
        kind=ControlKind.RESTART,
        target="workers",
        parameters={"mode": "pool_restart"},
        result={"mode": "pool_restart"},
        replies=[{"worker": "celery@host-a", "ok": "reload started"}],
    )

    listing = admin_client.get("/admin/system/controlrequest/")
    assert listing.status_code == 200 and b"workers" in listing.content
    detail = admin_client.get(f"/admin/system/controlrequest/{record.pk}/change/")
    assert (
        detail.status_code == 200
        and b"celery@host-a" in detail.content
        and b"reload started" in detail.content
    )
    assert b'name="_save"' not in detail.content  # view only
    assert (
        admin_client.post(f"/admin/system/controlrequest/{record.pk}/change/", {"target": "x"}).status_code
        == 403
    )
    assert admin_client.get("/admin/system/controlrequest/add/").status_code == 403
