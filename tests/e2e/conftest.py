"""Browser helpers over the session's Chromium (tests/browser.py).

Every test gets a `ui` helper with its own browser context. `ui.step(name)` records a screenshot of
each step in memory; when the test fails, the steps and the final page are written to
test-artifacts/e2e/<test>/ (gitignored), so a failure in CI shows what the browser saw.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.browser import ACTION_TIMEOUT_MS, NAVIGATION_TIMEOUT_MS, login  # noqa: F401 (tests import login from here)
from tests.conftest import REPO

ARTIFACTS = REPO / "test-artifacts" / "e2e"
# Set to a folder (docs/screenshots) to refresh the screenshots of docs/usage.md from a passing run.
DOCS_SHOTS_ENV = "APACHE_AIRFLOW_E2E_DOCS_SCREENSHOTS"


class UI:
    """One browser context and page for one test, with step screenshots."""

    def __init__(self, browser, name: str):
        self.name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120]
        self.browser = browser
        self.shots: list[tuple[str, bytes]] = []
        self.contexts = []
        self.context, self.page = self.new_page()

    def new_page(self, **context_kw):
        ctx = self.browser.new_context(viewport={"width": 1400, "height": 900}, **context_kw)
        ctx.set_default_timeout(ACTION_TIMEOUT_MS)
        ctx.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
        self.contexts.append(ctx)
        return ctx, ctx.new_page()

    def step(self, label: str, page=None) -> None:
        page = page or self.page
        try:
            self.shots.append((label, page.screenshot(full_page=False, timeout=15_000)))
        except Exception as e:  # a screenshot must never be the reason a test fails
            self.shots.append((f"{label}-screenshot-failed", repr(e).encode()))

    def save_doc_shot(self, filename: str, page=None) -> None:
        folder = os.environ.get(DOCS_SHOTS_ENV)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            (page or self.page).screenshot(path=str(Path(folder) / filename))

    def dump(self) -> Path:
        out = ARTIFACTS / self.name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        for i, (label, data) in enumerate(self.shots, 1):
            suffix = ".txt" if label.endswith("-screenshot-failed") else ".png"
            (out / f"{i:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)}{suffix}").write_bytes(data)
        for j, ctx in enumerate(self.contexts):
            for k, page in enumerate(ctx.pages):
                try:
                    page.screenshot(path=str(out / f"zz-final-context{j}-page{k}.png"), full_page=True, timeout=15_000)
                    (out / f"zz-final-context{j}-page{k}.url.txt").write_text(page.url + "\n")
                except Exception:
                    pass
        return out

    def close(self) -> None:
        for ctx in self.contexts:
            try:
                ctx.close()
            except Exception:
                pass


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def ui(request, browser):
    helper = UI(browser, request.node.nodeid.split("::", 1)[-1])
    yield helper
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        out = helper.dump()
        print(f"\nscreenshots of every step: {out}")
    helper.close()


EXAMPLE_DAGS = sorted(p.stem for p in (REPO / "dags").glob("example_*.py"))
DAGS_REGISTERED_TIMEOUT_S = 240


def wait_for_example_dags(stack, base: str | None = None) -> None:
    """A stack is healthy before the DAG processor has parsed every file: wait until the API has them all.

    `base` is where /auth/token and /api/v2 answer (the stack's own URL, or its base_url's path on it).
    """
    import requests

    base = base or stack.api
    admin = stack.credentials()["api"]["auth"]

    def registered():
        t = requests.post(f"{base}/auth/token", json=admin, timeout=60)
        t.raise_for_status()
        r = requests.get(f"{base}/api/v2/dags", params={"dag_id_pattern": "example_", "limit": 100}, timeout=60,
                         headers={"Authorization": f"Bearer {t.json()['access_token']}"})
        return r.ok and set(EXAMPLE_DAGS) <= {d["dag_id"] for d in r.json()["dags"]}

    stack.wait_for(registered, DAGS_REGISTERED_TIMEOUT_S, f"the example DAGs {EXAMPLE_DAGS} in the REST API",
                   poll=2.0)


@pytest.fixture(scope="session")
def admin(running_stack) -> dict[str, str]:
    """The generated admin's credentials, once the example DAGs are registered."""
    wait_for_example_dags(running_stack)
    return running_stack.credentials()["api"]["auth"]
