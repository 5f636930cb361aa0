"""Secret rotation on the real stack (issue 14): `credentials rotate --all` while a DAG run is in flight.
The run succeeds; every old secret is refused afterwards where it lived (PostgreSQL, Redis, Flower, the
admin's login, the JWT key after its grace); what the old Fernet key encrypted reads back and is stored
as ciphertext of the new key only. Then `connections` end to end, bad input included.

One stack for the module. The rotation's figures (seconds, restarts, per step) are printed: run with -s.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest
import redis
import requests
from cryptography.fernet import Fernet, InvalidToken

from tests.conftest import REPO, start_stack, stop_and_remove

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "rotation" / "rotation_inflight.py"
VARIABLE, CONN_PASSWORD = "rotation-variable-plaintext-7f3a", "rotation-conn-plaintext-91c2"
JWT_GRACE_S = 240
ROTATE_TIMEOUT_S = 1500


def _cli(stack, *args: str, input_text: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The CLI with stdin (passwords are read from it, never from argv)."""
    return subprocess.run([sys.executable, "-m", "airflow_resource", *args], env=stack.env, cwd=REPO, input=input_text,
                          capture_output=True, text=True, timeout=timeout)


def _secrets(home: Path) -> dict[str, str]:
    out = {}
    for line in (home / "secrets.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k.removeprefix("APACHE_AIRFLOW_").lower()] = v.strip()
    return out


def _pg(stack, user: str, password: str, db: str):
    return psycopg2.connect(host="127.0.0.1", port=int(stack.env["APACHE_AIRFLOW_POSTGRES_PORT"]), user=user,
                            password=password, dbname=db, connect_timeout=5)


def _token(stack, password: str) -> requests.Response:
    return requests.post(f"{stack.api}/auth/token", json={"username": "admin", "password": password}, timeout=30)


def _with_token(stack, token: str) -> int:
    return requests.get(f"{stack.api}/api/v2/dags", headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code


def _flower(stack, password: str) -> int:
    return requests.get(f"http://127.0.0.1:{stack.env['APACHE_AIRFLOW_FLOWER_PORT']}/api/workers",
                        auth=("admin", password), timeout=30).status_code


@pytest.fixture(scope="module")
def stack():
    st = start_stack("af-rotate-")
    yield st
    if os.environ.get("ROTATION_KEEP_HOME"):  # debugging: `manage stop`, the home and its logs stay
        _cli(st, "manage", "stop", timeout=300)
        return
    stop_and_remove(st)


@pytest.fixture(scope="module")
def rotated(stack):
    """Variable and connection made, a run in flight, then every secret rotated; what was there before."""
    assert stack.rest("POST", "/variables", json={"key": "rotation_var", "value": VARIABLE}).status_code == 201
    add = _cli(stack, "connections", "add", "rotation_conn", "--type", "generic", "--host", "db.example",
                    "--login", "etl", "--password-file", "-", input_text=CONN_PASSWORD + "\n")
    assert add.returncode == 0, add.stdout + add.stderr
    proc = _cli(stack, "content", "add", "--file", str(FIXTURE), "--force")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stack.wait_for(lambda: stack.rest("GET", "/dags/rotation_inflight").status_code == 200, 120, "DAG parsed")
    assert stack.rest("PATCH", "/dags/rotation_inflight", json={"is_paused": False}).status_code == 200
    run_id = stack.rest("POST", "/dags/rotation_inflight/dagRuns", json={"logical_date": None}).json()["dag_run_id"]

    def sleeping():
        tis = stack.rest("GET", f"/dags/rotation_inflight/dagRuns/{run_id}/taskInstances").json()["task_instances"]
        return any(t["task_id"] == "sleep" and t["state"] == "running" for t in tis)

    stack.wait_for(sleeping, 120, "the sleep task running")
    old = _secrets(stack.home)
    old_token = _token(stack, old["admin_password"]).json()["access_token"]
    t = time.monotonic()
    proc = _cli(stack, "credentials", "rotate", "--all", "--jwt-grace", str(JWT_GRACE_S), "--format", "json",
                     timeout=ROTATE_TIMEOUT_S)
    took = time.monotonic() - t
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    print(f"\ncredentials rotate --all: {took:.1f} s wall; restarted {result['restarted']}")
    for step in result["steps"]:
        print(f"  {step['seconds']:>6} s  {step['step']}")

    def finished():
        run = stack.rest("GET", f"/dags/rotation_inflight/dagRuns/{run_id}").json()
        return run if run["state"] in ("success", "failed") else None

    run = stack.wait_for(finished, 600, "the run in flight")
    return {"old": old, "new": _secrets(stack.home), "result": result, "run": run, "run_id": run_id,
            "old_token": old_token}


def test_the_run_in_flight_succeeds(stack, rotated):
    tis = stack.rest("GET", f"/dags/rotation_inflight/dagRuns/{rotated['run_id']}/taskInstances").json()
    states = {t["task_id"]: (t["state"], t["try_number"]) for t in tis["task_instances"]}
    assert rotated["run"]["state"] == "success", states
    assert states == {"sleep": ("success", 1), "read_back": ("success", 1)}


def test_every_secret_changed_and_the_plan_is_gone(stack, rotated):
    old, new, result = rotated["old"], rotated["new"], rotated["result"]
    assert result["ok"] and set(result["rotated"]) == {"admin", "postgres", "redis", "flower", "jwt",
                                                        "api-secret-key", "fernet"}
    for key in ("admin_password", "postgres_password", "postgres_superuser_password", "data_db_password",
                "redis_password", "flower_password", "jwt_private_key", "api_secret_key", "fernet_key"):
        assert new[key] and new[key] != old[key], key
    assert "," not in new["fernet_key"]  # the old key was dropped after the re-encryption
    assert housekeeper_unchanged(old, new)
    assert not (stack.home / "secrets.rotating.json").exists()
    assert stat.S_IMODE(os.stat(stack.home / "secrets.env").st_mode) == 0o600
    assert {"api-server", "scheduler", "dag-processor", "triggerer", "worker-1", "flower", "metrics"} <= set(
        result["restarted"])
    assert stack.status()["healthy"]


def test_the_rotation_is_in_the_audit_trail_without_a_secret(stack, rotated):
    proc = _cli(stack, "audit", "--event", "resource.credentials.rotate", "--format", "json", timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(proc.stdout)
    assert rows, "no resource.credentials.rotate row"
    extra = rows[-1]["extra"]
    assert extra["outcome"] == "ok" and set(extra["rotated"]) == set(rotated["result"]["rotated"])
    assert extra["restarted"] == rotated["result"]["restarted"] and extra["user"] == rows[-1]["user"]
    text = json.dumps(rows)
    for key, value in {**rotated["old"], **rotated["new"]}.items():
        if key.endswith(("password", "_key")) and value:
            assert value not in text, key


def housekeeper_unchanged(old, new) -> bool:
    return old["housekeeper_password"] == new["housekeeper_password"]


def test_postgres_refuses_the_old_passwords(stack, rotated):
    old, new = rotated["old"], rotated["new"]
    for user, key, db in (("airflow", "postgres_password", "airflow"), ("postgres", "postgres_superuser_password",
                          "postgres"), ("resource_data", "data_db_password", "resource_data")):
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            _pg(stack, user, old[key], db)
        _pg(stack, user, new[key], db).close()


def test_redis_refuses_the_old_password(stack, rotated):
    port = int(stack.env["APACHE_AIRFLOW_REDIS_PORT"])
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, password=rotated["old"]["redis_password"]).ping()
    assert redis.Redis(port=port, password=rotated["new"]["redis_password"]).ping()
    conf = (stack.home / "redis" / "redis.conf").read_text()
    assert f"requirepass {rotated['new']['redis_password']}" in conf


def test_flower_and_the_admin_refuse_the_old_passwords(stack, rotated):
    old, new = rotated["old"], rotated["new"]
    assert _flower(stack, old["flower_password"]) == 401
    assert _flower(stack, new["flower_password"]) == 200
    assert _token(stack, old["admin_password"]).status_code == 401
    assert _token(stack, new["admin_password"]).status_code in (200, 201)


def test_a_token_issued_before_the_jwt_rotation_still_works(stack, rotated):
    assert _with_token(stack, rotated["old_token"]) == 200
    kid_new = json.loads((stack.home / "run" / "jwks.json").read_text())["keys"][0]["kid"]
    assert len(json.loads((stack.home / "run" / "jwks.json").read_text())["keys"]) == 2
    assert kid_new


def test_fernet_data_reads_back_and_is_stored_under_the_new_key_only(stack, rotated):
    old, new = rotated["old"], rotated["new"]
    r = stack.rest("GET", "/variables/rotation_var")
    assert r.json()["value"] == VARIABLE
    got = _cli(stack, "connections", "get", "rotation_conn", "--show-secrets", "--format", "json")
    assert json.loads(got.stdout)["password"] == CONN_PASSWORD
    with _pg(stack, "postgres", new["postgres_superuser_password"], "airflow") as conn, conn.cursor() as cur:
        cur.execute("SELECT val, is_encrypted FROM variable WHERE key = 'rotation_var'")
        val, encrypted = cur.fetchone()
        cur.execute("SELECT password, is_encrypted FROM connection WHERE conn_id IN ('rotation_conn', 'resource_postgres')")
        conns = cur.fetchall()
    stored = [(val, encrypted), *conns]
    assert len(stored) == 3
    for text, encrypted in stored:
        assert encrypted and VARIABLE not in text and CONN_PASSWORD not in text and new["data_db_password"] not in text
        Fernet(new["fernet_key"].encode()).decrypt(text.encode())
        with pytest.raises(InvalidToken):
            Fernet(old["fernet_key"].encode()).decrypt(text.encode())


def test_connections_round_trip(stack, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret-api-key\n")
    assert _cli(stack, "connections", "add", "rt_http", "--type", "generic", "--host", "api.example", "--port", "443",
                     "--password-file", str(pw)).returncode == 0
    assert _cli(stack, "connections", "add", "rt_pg", "--uri", "postgres://etl@db.example:5432/sales?sslmode=require",
                     "--password-file", "-", input_text="pg-pass\n").returncode == 0
    listed = {c["connection_id"]: c for c in json.loads(_cli(stack, "connections", "list", "--json").stdout)["connections"]}
    assert listed["rt_pg"]["conn_type"] == "postgres" and listed["rt_pg"]["schema"] == "sales"
    assert listed["rt_http"]["password"] == "********"
    masked = _cli(stack, "connections", "get", "rt_http")
    assert "s3cret-api-key" not in masked.stdout and "********" in masked.stdout
    assert json.loads(_cli(stack, "connections", "get", "rt_pg", "--show-secrets", "--json").stdout)["password"] == "pg-pass"
    out = tmp_path / "conns.json"
    assert _cli(stack, "connections", "export", str(out)).returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    exported = {c["connection_id"]: c for c in json.loads(out.read_text())["connections"]}
    assert exported["rt_http"]["password"] == "s3cret-api-key" and "resource_postgres" not in exported
    for conn_id in ("rt_http", "rt_pg"):
        assert _cli(stack, "connections", "remove", conn_id).returncode == 0
    assert _cli(stack, "connections", "get", "rt_pg").returncode == 2
    only = tmp_path / "two.json"
    only.write_text(json.dumps({"connections": [exported["rt_http"], exported["rt_pg"]]}))
    assert _cli(stack, "connections", "import", str(only)).returncode == 0
    back = json.loads(_cli(stack, "connections", "get", "rt_http", "--show-secrets", "--json").stdout)
    assert back["password"] == "s3cret-api-key" and back["port"] == 443


@pytest.mark.parametrize("args, stdin, says", [
    (("add", "x;rm -rf /", "--type", "generic"), None, "not allowed"),
    (("add", "x' OR '1'='1", "--type", "generic"), None, "not allowed"),
    (("add", "no_provider", "--type", "http"), None, "unknown type"),  # the http provider is not installed
    (("add", "bad_type", "--type", "nosuchtype"), None, "unknown type"),
    (("add", "rt_http", "--type", "generic"), None, "already exists"),
    (("add", "in_uri", "--uri", "postgres://u:pw@h/db"), None, "holds a password"),
    (("add", "resource_postgres", "--type", "postgres"), None, "resource's own"),
    (("remove", "resource_postgres"), None, "resource's own"),
    (("get", "$(id)"), None, "not allowed"),
])
def test_connections_bad_input_changes_nothing(stack, args, stdin, says):
    before = _cli(stack, "connections", "list", "--json").stdout
    proc = _cli(stack, "connections", *args, input_text=stdin)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert says in proc.stderr
    assert _cli(stack, "connections", "list", "--json").stdout == before


def test_an_import_with_a_duplicate_changes_nothing(stack, tmp_path):
    before = _cli(stack, "connections", "list", "--json").stdout
    f = tmp_path / "dup.json"
    f.write_text(json.dumps({"connections": [{"connection_id": "fresh_one", "conn_type": "generic"},
                                             {"connection_id": "rt_http", "conn_type": "generic"}]}))
    proc = _cli(stack, "connections", "import", str(f))
    assert proc.returncode == 1 and "already exist" in proc.stderr
    assert _cli(stack, "connections", "list", "--json").stdout == before


def test_rotate_bad_input(stack):
    proc = _cli(stack, "credentials", "rotate", "nosuch")
    assert proc.returncode == 1 and "unknown secret" in proc.stderr
    assert _cli(stack, "credentials", "rotate").returncode == 1


def test_the_old_jwt_key_is_refused_after_its_grace(stack, rotated):
    """Last: waits out the grace. Then the old key leaves the JWKS and a token it signed is refused."""
    until = rotated["result"]["jwt_old_key_trusted_until"]
    from datetime import datetime

    wait = datetime.fromisoformat(until).timestamp() - time.time() + 2
    if wait > 0:
        time.sleep(wait)
    proc = _cli(stack, "credentials", "rotate", "--drop-old-jwt-keys", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(json.loads((stack.home / "run" / "jwks.json").read_text())["keys"]) == 1
    refused = requests.get(f"{stack.api}/api/v2/dags", headers={"Authorization": f"Bearer {rotated['old_token']}"},
                           timeout=30)
    assert (refused.status_code, refused.json().get("detail")) == (403, "Invalid JWT token")  # Airflow's answer
    fresh = _token(stack, rotated["new"]["admin_password"]).json()["access_token"]
    assert _with_token(stack, fresh) == 200
    assert _cli(stack, "credentials", "rotate", "--drop-old-jwt-keys").returncode == 2
