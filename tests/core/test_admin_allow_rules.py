"""Outbound allow rules are managed in the Django admin, validated, and take effect at once."""

import pytest
from django.test import Client

from agentmesh.accounts.models import Role
from agentmesh.core import safe_http
from agentmesh.core.models import OutboundAllowRule

pytestmark = pytest.mark.django_db
ADD = "/admin/core/outboundallowrule/add/"


@pytest.fixture
def admin_client(make_user):
    client = Client()
    client.force_login(make_user(Role.ADMIN, is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def nothing_allowed(settings):
    settings.SAFE_HTTP_ALLOWLIST = []
    safe_http.clear_allow_rule_cache()


def add_rule(client, pattern, **extra):
    return client.post(ADD, {"pattern": pattern, "description": "intranet", "enabled": "on", **extra})


@pytest.mark.parametrize(
    "pattern",
    [
        "10.0.0.0/33",
        "10.0.0.1/8",
        "300.1.2.3",
        "10.0.0.0/abc",
        "fe80::zz/64",
        "bad host!",
        "-x.internal",
        "0.0.0.0/0",
    ],
)
def test_bad_patterns_are_form_errors(admin_client, pattern):
    assert admin_client.get(ADD).status_code == 200
    response = add_rule(admin_client, pattern)
    assert response.status_code == 200
    assert "pattern" in response.context["adminform"].form.errors
    assert not OutboundAllowRule.objects.exists()


def test_rules_are_listed_and_searchable(admin_client):
    OutboundAllowRule.objects.create(pattern="*.corp.internal", description="intranet services")
    OutboundAllowRule.objects.create(pattern="192.168.7.0/24", description="lab")
    page = admin_client.get("/admin/core/outboundallowrule/?q=lab").content.decode()
    assert "192.168.7.0/24" in page and "corp.internal" not in page
    assert "Outbound allow rules" in admin_client.get("/admin/").content.decode()


def test_a_rule_saved_in_the_admin_is_effective_at_once(admin_client, nothing_allowed, fake_api):
    with pytest.raises(safe_http.UnsafeURLError):
        safe_http.safe_request("GET", f"{fake_api.url}/items/1")
    with pytest.raises(safe_http.UnsafeURLError):
        safe_http.check_url("http://10.20.30.40/hook", resolve=False)

    assert add_rule(admin_client, " 127.0.0.0/8 ").status_code == 302
    assert add_rule(admin_client, "10.20.0.0/16").status_code == 302
    assert add_rule(admin_client, "*.Corp.Internal.").status_code == 302
    assert set(OutboundAllowRule.objects.values_list("pattern", flat=True)) == {
        "127.0.0.0/8",
        "10.20.0.0/16",
        "*.corp.internal",
    }
    assert safe_http.safe_request("GET", f"{fake_api.url}/items/1").status_code == 200
    safe_http.check_url("http://10.20.30.40/hook", resolve=False)

    rule = OutboundAllowRule.objects.get(pattern="10.20.0.0/16")
    response = admin_client.post(f"/admin/core/outboundallowrule/{rule.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    with pytest.raises(safe_http.UnsafeURLError):
        safe_http.check_url("http://10.20.30.40/hook", resolve=False)
