"""Alert webhook URLs are checked on save with the safe HTTP client's URL check."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from agentmesh.accounts.models import Role
from observability.models import AlertRule
from tests.admin_forms import admin_form_data
from tests.api_base import assert_problem

pytestmark = pytest.mark.django_db
RULES = reverse("observability-api:alertrule-list")
UNSAFE = [
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.5/hook",
    "http://[::1]/hook",
    "ftp://127.0.0.1/x",
]


def rule_payload(url):
    return {
        "name": "r",
        "metric": "events",
        "threshold": 1,
        "channels": [{"type": "log"}, {"type": "webhook", "url": url}],
    }


@pytest.mark.parametrize("url", UNSAFE)
def test_unsafe_webhook_url_is_refused_on_create_and_update(client_for, developer, url):
    client = client_for(developer)
    body = assert_problem(client.post(RULES, rule_payload(url), format="json"), 400, "channels[1].url")
    assert not AlertRule.objects.exists(), body

    rule = AlertRule.objects.create(owner=developer, name="r", metric="events", threshold=1)
    detail = reverse("observability-api:alertrule-detail", args=[rule.pk])
    assert_problem(
        client.patch(detail, {"channels": [{"type": "webhook", "url": url}]}, format="json"),
        400,
        "channels[0].url",
    )
    rule.refresh_from_db()
    assert rule.channels == []


def test_allowed_webhook_url_is_saved(client_for, developer):
    # 127.0.0.1 is on the test settings' allow list, as an admin allow rule would put it
    response = client_for(developer).post(RULES, rule_payload("http://127.0.0.1:9/hook"), format="json")
    assert response.status_code == 201, response.json()


def test_admin_form_refuses_unsafe_webhook_url(make_user):
    admin = make_user(Role.ADMIN, is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    rule = AlertRule.objects.create(owner=admin, name="r", metric="events", threshold=1)
    url = f"/admin/observability/alertrule/{rule.pk}/change/"
    data = admin_form_data(client.get(url).content.decode(), "alertrule_form")
    data["channels"] = [json.dumps([{"type": "webhook", "url": "http://169.254.169.254/"}])]
    response = client.post(url, data)
    assert response.status_code == 200
    assert "channels[0].url" in str(response.context["adminform"].form.errors)
    rule.refresh_from_db()
    assert rule.channels == []

    data["channels"] = [json.dumps([{"type": "webhook", "url": "http://127.0.0.1:9/hook"}])]
    assert client.post(url, data).status_code == 302
    rule.refresh_from_db()
    assert rule.channels[0]["url"] == "http://127.0.0.1:9/hook"
