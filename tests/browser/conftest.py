"""A headless Chromium (one per test module) against the live server, logged in as an admin."""

import re
import shutil

import pytest
from django.conf import settings

from agentmesh.accounts.models import Role

from .chromium import missing_reason, new_driver

ARTIFACTS = settings.VAR_DIR / "browser-artifacts"
PASSWORD = "s3cure-Passw0rd!"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    profile = tmp_path_factory.mktemp("chromium-profile")
    driver = new_driver(profile)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.browser_test_failed = report.failed
    return report


@pytest.fixture
def screenshot(browser, request):
    """screenshot("step") saves var/browser-artifacts/<test>-<n>-<step>.png (a CI artifact);
    a failed test also leaves the page it failed on."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    test = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    for old in ARTIFACTS.glob(f"{test}-*.png"):
        old.unlink()
    count = iter(range(1, 100))

    def save(step: str):
        path = ARTIFACTS / f"{test}-{next(count):02d}-{step}.png"
        assert browser.save_screenshot(str(path)), f"no screenshot written to {path}"
        return path

    yield save
    if getattr(request.node, "browser_test_failed", False):
        save("FAILED")


@pytest.fixture
def operator(make_user):
    """An admin as `make run` seeds one (role admin, staff, superuser), with the password the
    browser types."""
    return make_user(Role.ADMIN, is_staff=True, is_superuser=True, password=PASSWORD)


@pytest.fixture
def logged_in(browser, live_server_url, operator, screenshot):
    """The browser logged in through /admin/login/ as `operator`; returns the server URL."""
    from .pages import log_in

    browser.delete_all_cookies()
    log_in(browser, live_server_url, operator.username, PASSWORD, screenshot=screenshot)
    return live_server_url
