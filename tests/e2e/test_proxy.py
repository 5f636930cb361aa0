"""Behind a reverse proxy at a sub-path: APACHE_AIRFLOW_BASE_URL=http://127.0.0.1:<port>/airflow.

A second stack is started with the base URL, and a small proxy (tests/e2e/proxy.py) forwards only
/airflow/... to its api-server. The browser and the REST client talk to the proxy alone.
"""

from __future__ import annotations

import re

import pytest
import requests

from tests.conftest import free_port, start_stack, stop_and_remove
from tests.e2e.conftest import login, wait_for_example_dags
from tests.e2e.proxy import SubPathProxy

pytestmark = [pytest.mark.e2e, pytest.mark.long]  # a second stack: `./cli.sh test long`

expect = pytest.importorskip("playwright.sync_api").expect

PREFIX = "/airflow"


@pytest.fixture(scope="module")
def proxied():
    port = free_port()
    public = f"http://127.0.0.1:{port}{PREFIX}"
    stack = start_stack("af-e2e-proxy-", extra_env={"APACHE_AIRFLOW_BASE_URL": public})
    try:
        # With a sub-path base_url the auth manager's routes (/auth/token, /auth/login) answer only
        # under the path, also on the api-server's own port.
        wait_for_example_dags(stack, base=f"{stack.api}{PREFIX}")
        upstream = int(stack.env["APACHE_AIRFLOW_API_PORT"])
        with SubPathProxy(port, upstream, PREFIX) as proxy:
            yield stack, public, proxy
    finally:
        stop_and_remove(stack)


def test_ui_and_rest_api_work_through_a_proxy_at_a_sub_path(proxied, ui):
    stack, public, proxy = proxied
    admin = stack.credentials()["api"]["auth"]
    page = ui.page

    # Login page through the proxy, then the login itself.
    page.goto(f"{public}/")
    page.wait_for_url(re.compile(rf"^{re.escape(public)}/auth/login/.*"))
    expect(page.locator("#username")).to_be_visible()
    ui.step("proxied-login-page")
    login(page, public, admin["username"], admin["password"])
    assert page.url.startswith(public), page.url
    ui.step("proxied-logged-in")

    # The DAG list, with the example DAGs, from the API behind the proxy.
    page.goto(f"{public}/dags")
    for dag_id in ("example_bash", "example_etl"):
        expect(page.get_by_role("link", name=dag_id, exact=True)).to_be_visible()
    page.get_by_role("link", name="example_bash", exact=True).click()
    page.wait_for_url(f"{public}/dags/example_bash")
    expect(page.get_by_role("heading", name="example_bash")).to_be_visible()
    ui.step("proxied-dag")

    # Nothing the browser asked for left the sub-path (the proxy 404s anything else).
    escaped = [(m, p) for m, p, status in proxy.requests if status == 404 and not p.startswith(PREFIX)]
    assert not escaped, f"requests outside {PREFIX}: {escaped[:10]}"

    # REST with a token, through the proxy only.
    r = requests.post(f"{public}/auth/token", json=admin, timeout=60)
    assert r.status_code in (200, 201), r.text
    token = r.json()["access_token"]
    r = requests.get(f"{public}/api/v2/dags", headers={"Authorization": f"Bearer {token}"},
                     params={"dag_id_pattern": "example_"}, timeout=60)
    assert r.status_code == 200, r.text
    assert {"example_bash", "example_etl"} <= {d["dag_id"] for d in r.json()["dags"]}
    assert requests.get(f"{public}/api/v2/dags", timeout=60).status_code == 401
