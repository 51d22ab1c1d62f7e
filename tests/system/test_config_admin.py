"""The admin pages of runtime configuration (constance's page) and feature flags save through
the services: validated like the API and audited through channel `admin`."""

import pytest
from django.test import Client

from agentmesh.accounts.models import Role
from agentmesh.core.features import flag_is_active, runtime_setting
from observability.models import ObservabilityEvent
from system.models import FeatureFlag
from tests.admin_forms import admin_form_data

pytestmark = pytest.mark.django_db
CONFIG_ADMIN = "/admin/constance/config/"


@pytest.fixture
def staff(make_user):
    client = Client()
    client.force_login(make_user(Role.ADMIN, is_staff=True, is_superuser=True))
    return client


def _config_form(staff) -> dict:
    page = staff.get(CONFIG_ADMIN)
    assert page.status_code == 200
    html = page.content.decode()
    assert "AGENTS_DEFAULT_MAX_TURNS" in html and "MAINTENANCE_MODE" in html
    return admin_form_data(html, "changelist-form")


def test_a_config_change_in_the_admin_goes_through_the_service(staff):
    data = _config_form(staff)
    data["AGENTS_DEFAULT_MAX_TURNS"] = ["4"]
    response = staff.post(CONFIG_ADMIN, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert runtime_setting("AGENTS_DEFAULT_MAX_TURNS") == 4
    event = ObservabilityEvent.objects.get(type="audit.config_update")
    assert event.payload["channel"] == "admin"
    assert event.payload["changes"] == {"AGENTS_DEFAULT_MAX_TURNS": [10, 4]}  # only what changed


def test_an_out_of_range_value_in_the_admin_is_a_form_error(staff):
    data = _config_form(staff)
    data["AGENTS_DEFAULT_MAX_TURNS"] = ["5000"]
    data["USER_THROTTLE_RATE"] = ["very fast"]
    response = staff.post(CONFIG_ADMIN, data)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Out of range" in html and "Expected a rate" in html
    assert runtime_setting("AGENTS_DEFAULT_MAX_TURNS") == 10
    assert not ObservabilityEvent.objects.filter(type="audit.config_update").exists()


def test_a_flag_added_and_changed_in_the_admin_goes_through_the_service(staff, developer):
    add = "/admin/system/featureflag/add/"
    data = admin_form_data(staff.get(add).content.decode(), "featureflag_form")
    data.update(name=["streaming"], everyone=["false"], note=["off while we fix the proxy"])
    response = staff.post(add, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    flag = FeatureFlag.objects.get(name="streaming")
    assert flag.everyone is False and not flag_is_active("streaming", developer)
    created = ObservabilityEvent.objects.get(type="audit.create", resource_type="system.featureflag")
    assert created.payload["channel"] == "admin"

    change = f"/admin/system/featureflag/{flag.pk}/change/"
    data = admin_form_data(staff.get(change).content.decode(), "featureflag_form")
    data.update(everyone=["unknown"], roles=["developer"], users=[str(developer.pk)], superusers=[])
    data.pop("superusers", None)
    response = staff.post(change, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    flag.refresh_from_db()
    assert flag.everyone is None and flag.roles == ["developer"] and list(flag.users.all()) == [developer]
    assert flag_is_active("streaming", developer)
    updated = ObservabilityEvent.objects.get(type="audit.update", resource_type="system.featureflag")
    assert updated.payload["channel"] == "admin" and updated.payload["changes"]["users"] == [developer.pk]

    data = admin_form_data(staff.get(change).content.decode(), "featureflag_form")
    data["percent"] = ["150"]
    response = staff.post(change, data)
    assert response.status_code == 200  # refused on the form
    flag.refresh_from_db()
    assert flag.percent is None


def test_deleting_a_flag_in_the_admin_resets_it(staff):
    from system.services.flags import flag_set

    flag_set(name="webhooks", everyone=False)
    flag = FeatureFlag.objects.get(name="webhooks")
    response = staff.post(f"/admin/system/featureflag/{flag.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not FeatureFlag.objects.exists() and flag_is_active("webhooks")
    assert ObservabilityEvent.objects.get(type="audit.delete", resource_type="system.featureflag")
