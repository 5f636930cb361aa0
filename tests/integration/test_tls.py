"""TLS end to end on a real stack (APACHE_AIRFLOW_TLS=on, a generated CA): REST over https verified with the
stack's CA and refused by a client that does not trust it, a task run whose Execution API calls go over
https, the security headers, Secure cookies, no plaintext on the API port, no task log server listening, a
Chromium login over https that trusts the certificate by its public key; and the API host guard refusing a
network-facing api-server without TLS before anything is written."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO, cli, make_home, processes_of, stack_env, start_stack, stop_and_remove

pytestmark = pytest.mark.integration

DAG_RUN_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def stack():
    # One-minute tokens: the UI must outlive its token on its session (scaled down from the 1 h default).
    st = start_stack("af-tls-", extra_env={"APACHE_AIRFLOW_TLS": "on", "APACHE_AIRFLOW_API_TOKEN_MINUTES": "1"})
    yield st
    stop_and_remove(st)


@pytest.fixture(scope="module")
def ca(stack) -> str:
    return str(stack.home / "tls" / "ca.pem")


@pytest.fixture(scope="module")
def base(stack) -> str:
    return f"https://127.0.0.1:{stack.env['APACHE_AIRFLOW_API_PORT']}"


@pytest.fixture(scope="module")
def admin(stack) -> dict:
    return stack.credentials()["api"]["auth"]


class _Rest(requests.Session):
    """A REST session over https that verifies against the stack's CA (and nothing else), logging in again
    when its one-minute token expired."""

    def __init__(self, base: str, ca: str, admin: dict):
        super().__init__()
        self.trust_env = False  # a REQUESTS_CA_BUNDLE of the caller's would win over self.verify
        self.verify = ca
        self.base, self.admin = base, admin
        self.login()

    def login(self) -> str:
        r = super().request("POST", f"{self.base}/auth/token", json=self.admin, timeout=30)
        assert r.status_code in (200, 201), r.text
        self.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        return r.json()["access_token"]

    def request(self, method, url, *args, **kw):
        r = super().request(method, url, *args, **kw)
        if r.status_code == 401:
            self.login()
            r = super().request(method, url, *args, **kw)
        return r


@pytest.fixture(scope="module")
def rest(base, ca, admin):
    return _Rest(base, ca, admin)


def _claims(token: str) -> dict:
    import base64

    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_api_host_guard_refuses_a_network_facing_api_without_tls_and_changes_nothing():
    home = make_home("af-tls-guard-")
    try:
        env = {**stack_env(home), "APACHE_AIRFLOW_API_HOST": "0.0.0.0"}
        proc = cli(env, "manage", "start", timeout=120)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "without TLS" in proc.stderr and "APACHE_AIRFLOW_TLS=on" in proc.stderr, proc.stderr
        assert "APACHE_AIRFLOW_API_INSECURE=acknowledged" in proc.stderr
        assert list(home.iterdir()) == [], "the refused start wrote into the home"
        assert processes_of(home) == []
    finally:
        import shutil

        shutil.rmtree(home, ignore_errors=True)


def test_rest_over_https_verified_with_the_stack_ca_and_refused_without_it(stack, base, ca, rest):
    r = rest.get(f"{base}/api/v2/version", timeout=30)
    assert r.status_code == 200 and r.json()["version"].startswith("3.")
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        requests.get(f"{base}/api/v2/version", timeout=30)  # the public roots only
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"{base}/api/v2/version", timeout=30, context=ssl.create_default_context())


def test_rest_tokens_live_the_configured_lifetime(rest):
    claims = _claims(rest.login())
    assert claims["exp"] - claims["iat"] == 60, claims


def test_expired_forged_and_other_audience_tokens_are_refused_and_recorded(stack, base, ca):
    """Tokens signed root-side with the stack's own key (secrets.env): the well-formed one is the control
    (200), so those refusals are about the claims; one more is signed with another key."""
    import time

    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from airflow_resource.config import jwt_keys, secrets

    stored = secrets.load(stack.home / "secrets.env").jwt_private_key
    key, now = jwt_keys._private(stored), int(time.time())

    def status(signing_key=key, **claims) -> int:
        body = {"sub": "1", "iat": now, "nbf": now, "exp": now + 300, "aud": "apache-airflow", **claims}
        token = jwt.encode(body, signing_key, algorithm=jwt_keys.ALGORITHM, headers={"kid": jwt_keys.kid(stored)})
        s = requests.Session()
        s.trust_env = False
        return s.get(f"{base}/api/v2/dags", headers={"Authorization": f"Bearer {token}"}, verify=ca,
                     timeout=30).status_code

    assert status() == 200
    assert status(iat=now - 7200, nbf=now - 7200, exp=now - 3600) in (401, 403)  # expired an hour ago
    assert status(aud="urn:airflow.apache.org:task") in (401, 403)  # a task's audience on the REST API
    assert status(aud="someone-else") in (401, 403)
    assert status(Ed25519PrivateKey.generate(), sub="forged") in (401, 403)  # the stack's kid, another key
    # Each refusal is in the audit trail with Airflow's reason and what the token claimed.

    def refusals():
        proc = stack.cli("audit", "--event", "resource.access.refused", "--format", "json", "--limit", "200",
                         timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        rows = json.loads(proc.stdout)
        seen = {(r["extra"]["detail"], r["extra"].get("token", {}).get("aud")) for r in rows}
        wanted = {("Token Expired", "apache-airflow"), ("Invalid JWT token", "urn:airflow.apache.org:task"),
                  ("Invalid JWT token", "someone-else")}
        forged = [r for r in rows if r["extra"].get("token", {}).get("sub") == "forged"]
        return (wanted <= seen and forged and forged[0]["extra"]["status"] in (401, 403)) or None

    stack.wait_for(refusals, 60, "the four refused tokens in the audit trail", poll=2.0)


def test_status_and_credentials_report_https(stack, base, ca):
    status = stack.status()
    assert status["healthy"] and status["tls"] is True and status["ui"] == base, status
    assert status["security_warnings"] == []
    api = stack.credentials()["api"]["connection"]
    assert api["protocol"] == "https" and api["url"] == base and api["ca_file"] == ca
    assert api["token_url"].startswith("https://")


def test_the_api_port_serves_no_plaintext(stack):
    port = stack.env["APACHE_AIRFLOW_API_PORT"]
    try:
        r = requests.get(f"http://127.0.0.1:{port}/api/v2/version", timeout=30)
    except requests.ConnectionError:
        return  # the TLS server dropped the plaintext request: nothing served
    assert r.status_code >= 400 and "version" not in r.text, (r.status_code, r.text[:200])


def test_keys_are_root_only_and_the_api_server_holds_its_key_as_a_memfd(stack):
    tls_dir = stack.home / "tls"
    for name in ("ca-key.pem", "server-key.pem"):
        st = (tls_dir / name).stat()
        assert st.st_uid == os.geteuid() and st.st_mode & 0o777 == 0o600, name
    api_env = json.loads((stack.home / "run" / "env" / "api-server.json").read_text())
    assert api_env["AIRFLOW__API__SSL_KEY"].startswith("-----BEGIN PRIVATE KEY-----")
    assert "AIRFLOW__API__SSL_KEY" in api_env["APACHE_AIRFLOW_MEMFD_VARS"].split(",")
    worker_env = json.loads((stack.home / "run" / "env" / "worker-1.json").read_text())
    assert "AIRFLOW__API__SSL_KEY" not in worker_env
    assert worker_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("https://127.0.0.1:")
    servers = [p for p in processes_of(stack.home) if p.environ().get("APACHE_AIRFLOW_COMPONENT") == "api-server"]
    assert servers, "no api-server process found"
    held = set()
    for p in servers:
        fd_dir = Path(f"/proc/{p.pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                held.add(os.readlink(fd))
            except OSError:
                continue
    assert any(link.startswith("/memfd:AIRFLOW__API__SSL_KEY") for link in held), sorted(held)[:20]
    for p in processes_of(stack.home):  # in no process's environment (what /proc/<pid>/environ shows)
        assert not any("PRIVATE KEY" in v for v in p.environ().values()), p.pid


def test_no_task_log_server_listens(stack):
    from airflow_resource.stack import system

    first = int(stack.env["APACHE_AIRFLOW_LOG_SERVER_PORT"])
    for port in (first, first + 1):  # the triggerer's, then worker-1's
        assert not system.port_in_use(port), f"port {port}: {system.who_listens(port)}"


def test_security_headers_on_ui_api_and_login(base, rest):
    for path in ("/api/v2/version", "/", "/auth/login/", "/execution/health"):
        r = rest.get(f"{base}{path}", timeout=30, allow_redirects=False)
        h = r.headers
        assert h.get("x-frame-options") in ("DENY", "SAMEORIGIN"), (path, dict(h))
        assert h.get("x-content-type-options") == "nosniff", path
        assert h.get("referrer-policy"), path
        assert "frame-ancestors 'self'" in h.get("content-security-policy", ""), path
        assert h.get("strict-transport-security", "").startswith("max-age="), path


def test_a_task_runs_through_the_execution_api_over_https(stack, base, rest):
    dag_id = "example_etl"
    url = f"{base}/api/v2/dags/{dag_id}"
    stack.wait_for(lambda: rest.get(url, timeout=30).status_code == 200, 180, f"{dag_id} to be parsed")
    assert rest.patch(url, json={"is_paused": False}, timeout=30).status_code == 200
    r = rest.post(f"{url}/dagRuns", json={"logical_date": None}, timeout=30)
    assert r.status_code == 200, r.text
    run_id = r.json()["dag_run_id"]

    def finished():
        run = rest.get(f"{url}/dagRuns/{run_id}", timeout=30).json()
        return run if run["state"] in ("success", "failed") else None

    run = stack.wait_for(finished, DAG_RUN_TIMEOUT_S, f"{dag_id} run {run_id}")
    tis = rest.get(f"{url}/dagRuns/{run_id}/taskInstances", timeout=30).json()["task_instances"]
    assert run["state"] == "success", {t["task_id"]: t["state"] for t in tis}
    log = rest.get(f"{url}/dagRuns/{run_id}/taskInstances/check/logs/1", timeout=30,
                   headers={"Accept": "application/json"})
    assert log.status_code == 200 and "holds 150 rows" in log.text


def test_chromium_logs_in_over_https_trusting_the_certificate_by_its_key(stack, base, admin, browser,
                                                                          playwright_driver):
    from playwright.sync_api import expect

    from airflow_resource.stack import tls_files
    from tests.browser import launch, login

    pin = tls_files.spki_sha256((stack.home / "tls" / "server.pem").read_bytes())
    context = browser.new_context()  # the session's browser has no pin: it refuses the generated certificate
    try:
        with pytest.raises(Exception, match="ERR_CERT_AUTHORITY_INVALID"):
            context.new_page().goto(f"{base}/", timeout=60_000)
    finally:
        context.close()
    browser = launch(playwright_driver, (f"--ignore-certificate-errors-spki-list={pin}",))
    try:
        context = browser.new_context()
        context.set_default_timeout(60_000)
        page = context.new_page()
        login(page, base, admin["username"], admin["password"])
        page.goto(f"{base}/dags")
        expect(page.get_by_role("link", name="example_etl", exact=True)).to_be_visible()
        cookies = {c["name"]: c for c in context.cookies()}
        assert "_token" in cookies, cookies.keys()
        for c in cookies.values():
            assert c["secure"], c["name"]
        assert page.url.startswith("https://")
        first = cookies["_token"]["value"]
        assert _claims(first)["exp"] - _claims(first)["iat"] <= 60
        # Past the token's minute the UI still works: it renews its token on its FAB session, no password.
        page.wait_for_timeout(75_000)
        page.goto(f"{base}/dags")
        expect(page.get_by_role("heading", name="Welcome").or_(
            page.get_by_role("link", name="example_etl", exact=True))).to_be_visible()
        assert "/auth/login" not in page.url  # renewed on the session: no login form
        # The renewal may land on the home page rather than the page asked for (seen under load): ask again.
        page.goto(f"{base}/dags")
        expect(page.get_by_role("link", name="example_etl", exact=True)).to_be_visible()
        renewed = {c["name"]: c for c in context.cookies()}["_token"]
        assert renewed["value"] != first and renewed["secure"]
    finally:
        browser.close()


def test_the_cli_reaches_the_api_over_https(stack):
    proc = subprocess.run([sys.executable, "-m", "airflow_resource", "content", "list", "--format", "json"],
                          env=stack.env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "example_etl" in proc.stdout
    assert Path(stack.home / "tls" / "ca.pem").exists()
