"""What an operator does in the admin, as browser steps (Selenium, explicit waits)."""

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 20  # seconds: a page of the live server on a busy CI machine


def wait_for(browser, css: str):
    return WebDriverWait(browser, WAIT).until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))


def open_page(browser, url: str, css: str):
    browser.get(url)
    return wait_for(browser, css)


def click_and_wait(browser, css: str, then_css: str):
    """Click `css` and wait until the next page (one that has `then_css`) has loaded."""
    element = wait_for(browser, css)
    old_page = browser.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(browser, WAIT).until(EC.staleness_of(old_page))
    return wait_for(browser, then_css)


def log_in(browser, base: str, username: str, password: str, *, screenshot) -> None:
    open_page(browser, f"{base}/admin/login/?next=/admin/", "form#login-form")
    browser.find_element(By.ID, "id_username").send_keys(username)
    browser.find_element(By.ID, "id_password").send_keys(password)
    screenshot("login")
    click_and_wait(browser, "form#login-form [type=submit]", "#user-tools")


def status_code(browser, url: str) -> int:
    """The HTTP status the browser gets for `url` with its session (fetch, same origin)."""
    return browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {credentials: 'same-origin', redirect: 'manual'})"
        ".then(r => done(r.status), e => done(String(e)));",
        url,
    )
