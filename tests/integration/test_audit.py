"""The audit trail and login protection on the real stack (issue 14).

The resource's actions (content add and remove, a refused add, a scale) are performed as an OS user
(SUDO_USER under root, as `sudo` sets it) and found in `audit --format json` with that user; failed
logins (the token route and the UI's form) are found there with the name tried and the client. Then
a client that keeps failing is refused with 429 and Retry-After by the API's /auth/token and by Flower,
the right password included, while another client is not; once the window (a setting, short here)
passes, the right password works again. Clients are told apart by their source address (127.0.0.x:
the whole range is this machine's loopback).
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
import redis
import requests
import urllib3

from tests.conftest import cli, start_stack, stop_and_remove

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "content"
MAX_FAILURES, WINDOW_S = 3, 15
ATTEMPTS = 30  # the figure: 30 wrong passwords (before: 30 x 401)
OS_USER = "auditor-alice"
LOGIN_LIMIT_DB = 2


@pytest.fixture(scope="module")
def stack():
    st = start_stack("af-audit-", extra_env={"APACHE_AIRFLOW_LOGIN_MAX_FAILURES": str(MAX_FAILURES),
                                             "APACHE_AIRFLOW_LOGIN_WINDOW_SECONDS": str(WINDOW_S)})
    yield st
    stop_and_remove(st)


def _secret(stack, name: str) -> str:
    for line in (stack.home / "secrets.env").read_text().splitlines():
        if line.startswith(f"APACHE_AIRFLOW_{name.upper()}="):
            return line.split("=", 1)[1].strip()
    raise AssertionError(f"{name} not in secrets.env")


def _as_user(stack, *args: str, timeout: float = 300):
    return cli({**stack.env, "SUDO_USER": OS_USER}, *args, timeout=timeout)


def _audit(stack, *args: str) -> list[dict]:
    proc = stack.cli("audit", "--format", "json", "--limit", "200", *args, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def _from(source: str, port: int) -> urllib3.HTTPConnectionPool:
    """Requests from this source address, each on a new connection (so they spread over the api-server's
    workers instead of riding one keep-alive connection to one of them)."""
    return urllib3.HTTPConnectionPool("127.0.0.1", port, source_address=(source, 0), retries=False, maxsize=1,
                                      headers={"Connection": "close"})


def _token_attempt(stack, source: str, password: str, username: str = "admin") -> urllib3.BaseHTTPResponse:
    pool = _from(source, int(stack.env["APACHE_AIRFLOW_API_PORT"]))
    return pool.request("POST", "/auth/token", body=json.dumps({"username": username, "password": password}),
                        headers={"Content-Type": "application/json"}, timeout=60)


def _flower_attempt(stack, source: str, password: str) -> urllib3.BaseHTTPResponse:
    pool = _from(source, int(stack.env["APACHE_AIRFLOW_FLOWER_PORT"]))
    auth = base64.b64encode(f"admin:{password}".encode()).decode()
    return pool.request("GET", "/api/workers", headers={"Authorization": f"Basic {auth}"}, timeout=60)


# ---------------------------------------------------------------- the resource's actions


def test_content_add_and_remove_are_in_the_trail_with_the_os_user(stack):
    started = time.time()
    hello = FIXTURES / "content_hello.py"
    proc = _as_user(stack, "content", "add", "--file", str(hello))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = _as_user(stack, "content", "add", "--file", str(hello))  # exists, no --force: refused, recorded
    assert again.returncode == 2, again.stdout + again.stderr
    proc = _as_user(stack, "content", "remove", "content_hello")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    rows = _audit(stack, "--user", OS_USER, "--event", "resource.content.*", "--since", "10m")
    assert [(r["event"], r["extra"]["outcome"]) for r in rows] == [
        ("resource.content.add", "ok"), ("resource.content.add", "refused"), ("resource.content.remove", "ok")]
    # found by their DAG too, beside Airflow's own events of it (the remove's pause); a refused add names
    # no DAG (it was never validated)
    by_dag = [r for r in _audit(stack, "--dag", "content_hello")]
    assert [r["id"] for r in by_dag if r["event"].startswith("resource.")] == [rows[0]["id"], rows[2]["id"]]
    add = rows[0]
    assert add["user"] == OS_USER and add["extra"]["via"] == "sudo" and add["extra"]["uid"] == 0
    assert add["extra"]["file"] == str(hello) and add["extra"]["dag_ids"] == ["content_hello"]
    assert "already exists" in rows[1]["extra"]["error"]
    assert all(r["when"] >= time.strftime("%Y-%m-%dT%H:%M", time.gmtime(started - 60)) for r in rows)
    # the filters are the REST API's: an event name, a prefix, a time range
    assert [r["id"] for r in _audit(stack, "--event", "resource.content.remove", "--user", OS_USER)] == [rows[2]["id"]]
    assert {r["id"] for r in rows} <= {r["id"] for r in _audit(stack, "--event", "resource.*")}
    assert _audit(stack, "--user", OS_USER, "--until", "2020-01-01") == []
    text = stack.cli("audit", "--user", OS_USER, timeout=60)
    assert text.returncode == 0 and "resource.content.remove" in text.stdout, text.stdout + text.stderr


def test_a_scale_is_in_the_trail(stack):
    proc = _as_user(stack, "manage", "scale", "--workers", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _audit(stack, "--event", "resource.manage.scale", "--user", OS_USER)
    assert len(rows) == 1, rows
    assert rows[0]["extra"]["workers"] == 0 and rows[0]["extra"]["workers_before"] == 1
    assert rows[0]["extra"]["outcome"] == "ok"


def test_failed_logins_are_in_the_trail(stack):
    r = _token_attempt(stack, "127.0.0.3", "not-the-password", username="intruder-token")
    assert r.status == 401
    # The UI's login form (FAB's view): a wrong password sends the browser back to the form.
    base = stack.api
    session = requests.Session()
    page = session.get(f"{base}/auth/login/", timeout=60)
    assert page.status_code == 200
    csrf = page.text.split('name="csrf_token"', 1)[1].split('value="', 1)[1].split('"', 1)[0]
    r2 = session.post(f"{base}/auth/login/", data={"username": "intruder-ui", "password": "nope", "csrf_token": csrf},
                      allow_redirects=False, timeout=60)
    assert r2.status_code == 302 and "/auth/login/" in r2.headers["Location"]

    token_rows = _audit(stack, "--event", "resource.login.failed", "--user", "intruder-token")
    assert len(token_rows) == 1 and token_rows[0]["extra"]["client"] == "127.0.0.3"
    assert token_rows[0]["extra"]["route"] == "token"
    ui_rows = _audit(stack, "--event", "resource.login.failed", "--user", "intruder-ui")
    assert len(ui_rows) == 1 and ui_rows[0]["extra"]["route"] == "ui-form"


# ---------------------------------------------------------------- login protection


def test_token_route_refuses_a_client_after_its_failures_until_the_window_passes(stack):
    attacker = "127.0.0.2"
    codes, retry = [], []
    for i in range(ATTEMPTS):
        r = _token_attempt(stack, attacker, f"wrong-{i}")
        codes.append(r.status)
        retry.append(r.headers.get("Retry-After"))
    # Exactly MAX_FAILURES password checks across both api-server workers: the counter is shared.
    assert codes == [401] * MAX_FAILURES + [429] * (ATTEMPTS - MAX_FAILURES), codes
    assert all(0 < int(x) <= WINDOW_S for x in retry[MAX_FAILURES:]), retry
    shared = redis.Redis.from_url(f"redis://:{_secret(stack, 'redis_password')}@127.0.0.1:"
                                  f"{stack.env['APACHE_AIRFLOW_REDIS_PORT']}/{LOGIN_LIMIT_DB}")
    assert int(shared.get(f"apache-airflow-resource:login-failures:{attacker}")) >= MAX_FAILURES

    right = _secret(stack, "admin_password")
    blocked = _token_attempt(stack, attacker, right)
    assert blocked.status == 429 and "Too many failed logins" in blocked.json()["detail"]
    assert _token_attempt(stack, "127.0.0.1", right).status == 201  # another client is not affected

    time.sleep(int(blocked.headers["Retry-After"]) + 1)
    r = _token_attempt(stack, attacker, right)
    assert r.status == 201 and r.json()["access_token"]

    rows = _audit(stack, "--event", "resource.login.blocked")
    assert [r["extra"]["client"] for r in rows].count(attacker) == 1  # once per window, not per refusal
    failed = [r for r in _audit(stack, "--event", "resource.login.failed", "--user", "admin")
              if r["extra"]["client"] == attacker]
    assert len(failed) == MAX_FAILURES


def test_flower_refuses_a_client_after_its_failures_until_the_window_passes(stack):
    attacker = "127.0.0.4"
    right = _secret(stack, "flower_password")
    assert _flower_attempt(stack, attacker, right).status == 200
    responses = [_flower_attempt(stack, attacker, f"wrong-{i}") for i in range(ATTEMPTS)]
    codes = [r.status for r in responses]
    assert codes == [401] * MAX_FAILURES + [429] * (ATTEMPTS - MAX_FAILURES), codes
    assert all(0 < int(r.headers["Retry-After"]) <= WINDOW_S for r in responses[MAX_FAILURES:])

    blocked = _flower_attempt(stack, attacker, right)
    assert blocked.status == 429
    assert _flower_attempt(stack, "127.0.0.1", right).status == 200  # the health probe's client still gets in
    # a browser's first request carries no credentials: answered 401 to make it ask, not counted
    fresh = _from("127.0.0.6", int(stack.env["APACHE_AIRFLOW_FLOWER_PORT"]))
    assert [fresh.request("GET", "/api/workers", timeout=60).status for _ in range(MAX_FAILURES + 2)] == \
        [401] * (MAX_FAILURES + 2)

    # Flower has no database credentials: its failures reach the event log through the api-server.
    def flower_rows():
        rows = [r for r in _audit(stack, "--event", "resource.login.*") if r["extra"].get("route") == "flower"
                and r["extra"].get("client") == attacker]
        kinds = sorted(r["event"] for r in rows)
        return rows if kinds == ["resource.login.blocked"] + ["resource.login.failed"] * MAX_FAILURES else None

    rows = stack.wait_for(flower_rows, 60, "Flower's failed logins in the audit trail", poll=2.0)
    assert {r["user"] for r in rows if r["event"] == "resource.login.failed"} == {"admin"}
    assert "wrong-" not in json.dumps(rows)  # the names tried, never the passwords

    time.sleep(int(blocked.headers["Retry-After"]) + 1)
    assert _flower_attempt(stack, attacker, right).status == 200
