"""The React UI in headless Chromium against the real stack: what a user does on port 48080.

Uses the session's `running_stack` (never stops it). Waits are Playwright's auto-waiting with
generous timeouts, never fixed sleeps.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import unquote

import pytest
import requests

from tests.e2e.conftest import EXAMPLE_DAGS, login

pytestmark = pytest.mark.e2e

expect = pytest.importorskip("playwright.sync_api").expect

RUN_TIMEOUT_MS = 240_000  # a DAG run on a busy 2-core machine, from trigger to green
ETL_CHECK_LINE = "example_etl_iris holds 150 rows, as extracted"


def run_state_badge(page):
    """The run's own state badge in the run header (the task table has one per row too)."""
    return page.locator("[data-testid='state-badge']:not(tr *)").first


def test_wrong_password_shows_the_login_error(running_stack, admin, ui):
    page = ui.page
    page.goto(f"{running_stack.api}/")
    page.wait_for_url(re.compile(r".*/auth/login/.*"))
    ui.step("login-page")
    page.locator("#username").fill(admin["username"])
    page.locator("#password").fill(admin["password"] + "-wrong")
    page.locator("input[type=submit], button[type=submit]").first.click()
    expect(page.get_by_text("Invalid login. Please try again.")).to_be_visible()
    ui.step("login-error")
    assert "/auth/login" in page.url
    expect(page.get_by_role("button", name="User")).to_have_count(0)


def test_admin_logs_in_sees_dags_graph_triggers_run_reads_log_logs_out(running_stack, admin, ui):
    page, api = ui.page, running_stack.api

    login(page, api, admin["username"], admin["password"])
    ui.step("logged-in")

    # The DAG list holds every example DAG of dags/.
    page.goto(f"{api}/dags")
    for dag_id in EXAMPLE_DAGS:
        expect(page.get_by_role("link", name=dag_id, exact=True)).to_be_visible()
    ui.step("dag-list")
    ui.save_doc_shot("dag-list.png")

    # Open example_etl from the list, switch to its graph: the tasks and their edges.
    page.get_by_role("link", name="example_etl", exact=True).click()
    page.wait_for_url(re.compile(r".*/dags/example_etl/?$"))
    expect(page.get_by_role("heading", name="example_etl")).to_be_visible()
    page.get_by_role("button", name=re.compile(r"^Show Graph")).click()
    graph = page.locator(".react-flow")
    for task in ("extract", "transform", "load", "check"):
        expect(graph.get_by_role("link", name=task, exact=True)).to_be_visible()
    expect(graph.get_by_role("img", name="Edge from load to check")).to_have_count(1)
    ui.step("dag-graph")
    page.get_by_role("button", name=re.compile(r"^Show Grid")).click()

    # Trigger it from the UI (the dialog unpauses the DAG on trigger).
    page.get_by_test_id("trigger-dag-button").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Trigger Dag - example_etl")).to_be_visible()
    ui.step("trigger-dialog")
    dialog.get_by_test_id("trigger-dag-submit").click()
    expect(page.get_by_text("Dag Run Triggered").first).to_be_visible()
    page.wait_for_url(re.compile(r".*/dags/example_etl/runs/[^/]+/?$"))
    run_id = unquote(page.url.rstrip("/").rsplit("/runs/", 1)[1])
    ui.step("run-triggered")

    # Watch the run go green: the UI refreshes itself while the run is active.
    badge = run_state_badge(page)
    expect(badge).to_have_text(re.compile(r"^\s*(Success|Failed)\s*$"), timeout=RUN_TIMEOUT_MS)
    ui.step("run-finished")
    run = running_stack.rest("GET", f"/dags/example_etl/dagRuns/{run_id}").json()
    assert run["state"] == "success", f"run {run_id} ended {run['state']}: {run}"
    expect(badge).to_have_text(re.compile(r"^\s*Success\s*$"))
    assert run["triggering_user_name"] == admin["username"]
    ui.save_doc_shot("dag-grid.png")

    # The check task's log holds the line the task printed. The log API sorts by timestamp, so the
    # printed line (stdout, flushed at the end) lands in the collapsed "Post Execute" group: expand all.
    page.get_by_role("table").get_by_role("link", name="check", exact=True).click()
    page.wait_for_url(re.compile(r".*/runs/.+/tasks/check/?(\?.*)?$"))
    expect(page.get_by_text("Done. Returned value was: 150")).to_be_visible(timeout=60_000)
    page.get_by_role("button", name="Log Settings").click()
    page.get_by_role("menuitem", name=re.compile(r"^Expand")).click()
    line = page.get_by_text(ETL_CHECK_LINE).first
    line.scroll_into_view_if_needed()
    expect(line).to_be_visible()
    ui.step("task-log")
    ui.save_doc_shot("task-log.png")

    # Log out through the user menu: back on the login page, and the app is closed to us.
    page.get_by_role("button", name="User").click()
    page.get_by_role("menuitem", name="Logout").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    page.wait_for_url(re.compile(r".*/auth/login/.*"))
    expect(page.locator("#username")).to_be_visible()
    ui.step("logged-out")
    page.goto(f"{api}/dags")
    page.wait_for_url(re.compile(r".*/auth/login/.*"))


@pytest.fixture(scope="module")
def viewer(running_stack, admin):
    """A user with FAB's Viewer role, created through the FAB auth manager's REST API."""
    username = f"e2e-viewer-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(16)
    headers = {"Authorization": f"Bearer {running_stack.token()}"}
    r = requests.post(f"{running_stack.api}/auth/fab/v1/users", headers=headers, timeout=60, json={
        "username": username, "email": f"{username}@example.org", "first_name": "E2E", "last_name": "Viewer",
        "roles": [{"name": "Viewer"}], "password": password})
    assert r.status_code in (200, 201), r.text
    assert [role["name"] for role in r.json()["roles"]] == ["Viewer"]
    yield {"username": username, "password": password}
    requests.delete(f"{running_stack.api}/auth/fab/v1/users/{username}",
                    headers={"Authorization": f"Bearer {running_stack.token()}"}, timeout=60)


def test_viewer_sees_the_dags_but_cannot_trigger_them(running_stack, viewer, ui):
    page, api = ui.page, running_stack.api
    before = running_stack.rest("GET", "/dags/example_bash/dagRuns").json()["total_entries"]

    login(page, api, viewer["username"], viewer["password"])
    page.goto(f"{api}/dags")
    for dag_id in EXAMPLE_DAGS:
        expect(page.get_by_role("link", name=dag_id, exact=True)).to_be_visible()
    ui.step("viewer-dag-list")

    page.get_by_role("link", name="example_bash", exact=True).click()
    expect(page.get_by_role("heading", name="example_bash")).to_be_visible()
    page.get_by_test_id("trigger-dag-button").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Trigger Dag - example_bash")).to_be_visible()
    with page.expect_response(lambda r: r.request.method == "POST" and "/dagRuns" in r.url) as posted:
        dialog.get_by_test_id("trigger-dag-submit").click()
    assert posted.value.status == 403, f"viewer's trigger answered {posted.value.status}"
    expect(page.get_by_text("Access Denied").first).to_be_visible()
    ui.step("viewer-trigger-denied")

    after = running_stack.rest("GET", "/dags/example_bash/dagRuns").json()["total_entries"]
    assert after == before, "a Viewer's trigger created a run"
