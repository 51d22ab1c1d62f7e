"""Debian's Chromium and chromedriver for the browser tests (no browser or driver download).

Imported by tests/conftest.py for the report header and summary line, so it imports neither
Django nor Selenium at module level.
"""

import os
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = "apt-get install chromium chromium-driver"
WINDOW = (1440, 900)


def missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        return f"Debian chromium/chromium-driver not installed ({', '.join(missing)} missing): {INSTALL_HINT}"
    return None


def status_line() -> str:
    reason = missing_reason()
    if reason:
        return f"browser tests (tests/browser): SKIPPED - {reason}"
    return (
        f"browser tests (tests/browser): run in headless {CHROMIUM} via {CHROMEDRIVER}; "
        "screenshots in var/browser-artifacts/"
    )


def new_driver(user_data_dir: Path):
    """A headless Chromium driven by Debian's chromedriver. The explicit driver path means
    Selenium Manager is never asked for anything (and offline even if it were)."""
    os.environ.setdefault("SE_OFFLINE", "true")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={user_data_dir}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    return driver
