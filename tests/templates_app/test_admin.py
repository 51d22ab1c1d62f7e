import pytest
from django.test import Client

from agentmesh.accounts.models import Role
from observability.models import ObservabilityEvent
from templates_app.models import Template, TemplateVersion
from tests.admin_forms import admin_form_data

from .test_templates_api import make_tool_template

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(make_user):
    client = Client()
    client.force_login(make_user(Role.ADMIN, is_staff=True, is_superuser=True))
    return client


def test_publish_and_unpublish_actions_go_through_the_service(staff, developer):
    template = make_tool_template(developer)
    url = "/admin/templates_app/template/"
    response = staff.post(url, {"action": "publish", "_selected_action": [str(template.pk)]})
    assert response.status_code == 302
    template.refresh_from_db()
    assert template.published is True
    assert ObservabilityEvent.objects.filter(type="audit.publish", resource_id=str(template.pk)).exists()
    staff.post(url, {"action": "unpublish", "_selected_action": [str(template.pk)]})
    template.refresh_from_db()
    assert template.published is False


def test_metadata_edits_save_through_the_service_and_versions_are_read_only(staff, developer):
    template = make_tool_template(developer)
    url = f"/admin/templates_app/template/{template.pk}/change/"
    data = admin_form_data(staff.get(url).content.decode(), "template_form")
    data["description"] = ["Edited in the admin"]
    response = staff.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    template.refresh_from_db()
    assert template.description == "Edited in the admin" and template.versions.count() == 1

    version = TemplateVersion.objects.get()
    assert staff.get(f"/admin/templates_app/templateversion/{version.pk}/change/").status_code == 200
    before = version.body
    staff.post(f"/admin/templates_app/templateversion/{version.pk}/change/", {"changelog": "x"})
    version.refresh_from_db()
    assert version.body == before and version.changelog == ""
    assert staff.get("/admin/templates_app/templateversion/add/").status_code == 403
    assert staff.get("/admin/templates_app/template/add/").status_code == 403
    assert Template.objects.count() == 1
