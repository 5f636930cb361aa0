"""One Playwright driver and one Chromium for the whole pytest session (Debian's chromium, never a
browser Playwright downloads).

Playwright's sync API runs an asyncio loop on the main thread from its first start until its stop, and
refuses a second sync_playwright() while one is running. So every test that drives a browser (tests/e2e,
test_access, test_tls) takes these session fixtures instead of starting a driver of its own: the driver
starts once and stops at the session's end. A test that needs other browser flags launches a browser of
its own from `playwright_driver` and closes it.

tests/conftest.py imports the fixtures, so every test module can use them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("APACHE_AIRFLOW_E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
# Generous on a busy 2-core machine: Playwright's auto-waiting polls until these run out.
ACTION_TIMEOUT_MS = 30_000
NAVIGATION_TIMEOUT_MS = 60_000

# Never let Playwright fetch a browser of its own.
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
os.environ.setdefault("PLAYWRIGHT_BROWSERS_PATH", "/nonexistent-playwright-browsers")


@pytest.fixture(scope="session")
def playwright_driver():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed in this venv")
    sync_api.expect.set_options(timeout=ACTION_TIMEOUT_MS)
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (Debian's browser; the tests never "
                    "download one)")
    pw = sync_api.sync_playwright().start()
    yield pw
    pw.stop()


def launch(playwright_driver, extra_args: tuple[str, ...] = ()):
    """A Chromium with the suite's flags and `extra_args`; the caller closes it."""
    return playwright_driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + list(extra_args),
                                             headless=True)


@pytest.fixture(scope="session")
def browser(playwright_driver):
    b = launch(playwright_driver)
    yield b
    b.close()


def login(page, base: str, username: str, password: str) -> None:
    """Log in through FAB's login form; returns once the React app shows its navigation."""
    from playwright.sync_api import expect

    page.goto(f"{base}/")
    page.wait_for_url(re.compile(r".*/auth/login/.*"))
    page.locator("#username").fill(username)
    page.locator("#password").fill(password)
    page.locator("input[type=submit], button[type=submit]").first.click()
    expect(page.get_by_role("button", name="User")).to_be_visible()
