"""The operator console walked in a real headless Chromium, as an operator would: log in,
the dashboard, a finished execution with its steps, cancelling a waiting execution, and the
append-only event history. A screenshot of every step goes to var/browser-artifacts/.

Skipped (saying why) where Debian's chromium and chromium-driver are not installed.
"""

import pytest
from django.urls import reverse
from selenium.webdriver.common.by import By

from observability.models import ObservabilityEvent
from observability.services import event_record
from tests.workflows.conftest import linear, transform
from workflows import services
from workflows.models import ExecutionStatus, WorkflowExecution

from .chromium import missing_reason
from .pages import click_and_wait, open_page, status_code, wait_for

pytestmark = pytest.mark.skipif(missing_reason() is not None, reason=missing_reason() or "")


def _execute(owner, name: str, definition: dict) -> WorkflowExecution:
    workflow = services.workflow_create(owner=owner, name=name, definition=definition)
    execution, _ = services.workflow_execute(workflow=workflow, user=owner, inputs={})
    execution.refresh_from_db()
    return execution


def _change_url(base: str, obj) -> str:
    opts = obj._meta
    return base + reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


def _shown(browser, text: str):
    """The element of the page's content whose own text is `text` (visible)."""
    found = browser.find_elements(By.XPATH, f"//*[@id='content-main']//*[normalize-space(text())='{text}']")
    shown = [element for element in found if element.is_displayed()]
    assert shown, f"{text!r} not shown: {browser.find_element(By.ID, 'content-main').text[:3000]}"
    return shown[0]


def test_an_operator_logs_in_and_sees_the_dashboard(browser, logged_in, operator, screenshot):
    # logged_in typed the credentials into /admin/login/ and submitted the form
    assert browser.current_url.rstrip("/").endswith("/admin")
    assert operator.username in browser.find_element(By.ID, "user-tools").text.lower()
    # the admin index: the operator's dashboard above the list of apps
    dashboard = wait_for(browser, "#agentmesh-dashboard")
    assert dashboard.is_displayed()
    assert "Workflow executions" in dashboard.text and "Agent runs" in dashboard.text, dashboard.text
    assert browser.find_elements(By.CSS_SELECTOR, "#content-main .app-workflows"), browser.page_source[:2000]
    screenshot("dashboard")
    # the admin's own styles are served (what `make run` serves with SERVE_STATIC)
    css = browser.find_element(By.CSS_SELECTOR, "link[rel=stylesheet][href*='admin/css/base.css']")
    assert status_code(browser, css.get_attribute("href")) == 200


def test_a_finished_execution_shows_its_steps(browser, logged_in, operator, screenshot):
    execution = _execute(
        operator, "browser-finished", linear(transform("fetch_city", "Paris"), transform("shout", "PARIS"))
    )
    assert execution.status == ExecutionStatus.SUCCEEDED

    open_page(browser, _change_url(logged_in, execution), "#content-main")
    screenshot("execution")

    # each step's node id shown on the page, in the order the steps ran
    first, second = (_shown(browser, node_id) for node_id in ("fetch_city", "shout"))
    assert first.location["y"] < second.location["y"]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", first)
    screenshot("steps")


def test_an_operator_cancels_a_waiting_execution(browser, logged_in, operator, screenshot):
    execution = _execute(
        operator,
        "browser-approval",
        linear({"id": "sign_off", "type": "approval", "config": {}}, transform("after", 1)),
    )
    assert execution.status == ExecutionStatus.WAITING

    open_page(browser, _change_url(logged_in, execution), "#content-main")
    screenshot("waiting")
    click_and_wait(browser, "a.action-cancel", "input[type=submit][name=confirm]")
    screenshot("confirm")
    click_and_wait(browser, "input[type=submit][name=confirm]", "#content-main")
    screenshot("cancelled")

    # the execution's own status field (not only the confirmation message) says cancelled
    status = browser.find_element(By.CSS_SELECTOR, "#content-main fieldset .field-status .readonly")
    assert status.text.strip().lower() == "cancelled"
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.CANCELLED


def test_events_cannot_be_deleted_from_the_admin(browser, logged_in, operator, screenshot):
    event = event_record(type="browser.test", message="an event an operator may not delete")
    assert event is not None
    delete_url = logged_in + reverse("admin:observability_observabilityevent_delete", args=[event.pk])

    assert status_code(browser, delete_url) == 403
    browser.get(delete_url)
    screenshot("delete-refused")

    open_page(
        browser, logged_in + reverse("admin:observability_observabilityevent_changelist"), "#result_list"
    )
    screenshot("events")
    actions = [
        option.get_attribute("value")
        for option in browser.find_elements(By.CSS_SELECTOR, "select[name=action] option")
    ]
    assert "delete_selected" not in actions
    assert ObservabilityEvent.objects.filter(pk=event.pk).exists()
