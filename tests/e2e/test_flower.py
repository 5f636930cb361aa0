"""Flower's own page in the browser, behind its basic auth: the stack's Celery workers are listed."""

from __future__ import annotations

import re

import pytest
import requests

pytestmark = pytest.mark.e2e

expect = pytest.importorskip("playwright.sync_api").expect


def test_flower_page_lists_the_workers_behind_basic_auth(running_stack, ui):
    flower = running_stack.credentials()["flower"]
    url = flower["connection"]["url"]
    assert url.endswith(f":{running_stack.env['APACHE_AIRFLOW_FLOWER_PORT']}")
    assert requests.get(f"{url}/workers", timeout=30).status_code == 401

    ctx, page = ui.new_page(http_credentials={"username": flower["auth"]["username"],
                                              "password": flower["auth"]["password"]})
    response = page.goto(f"{url}/workers")
    assert response is not None and response.status == 200
    workers = int(running_stack.env.get("APACHE_AIRFLOW_WORKERS", "1"))
    for n in range(1, workers + 1):
        # Celery hostnames are worker-N@<host>; the row says the worker is online.
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=re.compile(rf"\bworker-{n}@")))
        expect(row).to_have_count(1, timeout=60_000)
        expect(row.get_by_role("cell", name="Online", exact=True)).to_be_visible()
    ui.step("flower-workers", page)
