"""The real stack in a temporary home on free ports: health, DAG runs, crash recovery, a clean stop.

Tests in this module share one stack and run in file order; the last one stops it.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from tests.conftest import processes_of

pytestmark = pytest.mark.integration

DAG_RUN_TIMEOUT_S = 180
RESTART_TIMEOUT_S = 120


def test_status_json_reports_every_component_healthy(running_stack):
    proc = running_stack.cli("status", "--format", "json", timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import json

    report = json.loads(proc.stdout)
    assert report["running"] is True and report["healthy"] is True
    names = [c["name"] for c in report["components"]]
    assert names == ["postgres", "redis", "metrics", "api-server", "scheduler", "dag-processor", "triggerer", "worker-1",
                     "flower", "housekeeper"]
    for c in report["components"]:
        assert c["healthy"] and c["state"] == "RUNNING" and c["pid"] > 0 and c["uptime_s"] >= 0, c
    ports = {c["name"]: c["port"] for c in report["components"]}
    assert ports["api-server"] == int(running_stack.env["APACHE_AIRFLOW_API_PORT"])
    assert ports["postgres"] == int(running_stack.env["APACHE_AIRFLOW_POSTGRES_PORT"])


def test_components_run_as_the_service_user_not_root(running_stack):
    users = {c["name"]: psutil.Process(c["pid"]).username() for c in running_stack.status()["components"]}
    if os.geteuid() == 0:  # the data stores as the data user, out of every task's reach
        assert {n: u for n, u in users.items() if n in ("postgres", "redis")} == {"postgres": "airflow-data",
                                                                                   "redis": "airflow-data"}
        assert {u for n, u in users.items() if n not in ("postgres", "redis")} == {"airflow"}
    else:
        users = set(users.values())
        assert users == {psutil.Process().username()}


def test_no_secret_on_any_command_line(running_stack):
    creds = running_stack.credentials()
    secrets = [c["auth"]["password"] for c in creds.values() if c["auth"].get("password")]
    assert len(secrets) == 5 and all(len(s) >= 16 for s in secrets)  # api, postgres, resource-data, redis, flower
    cmdlines = []
    for p in psutil.process_iter(["cmdline"]):
        cmdlines.append(" ".join(p.info["cmdline"] or []))
    leaks = [c for c in cmdlines for s in secrets if s in c]
    assert leaks == []
    mode = (running_stack.home / "secrets.env").stat().st_mode & 0o777
    assert mode == 0o600
    assert (running_stack.home / "supervisord.conf").stat().st_mode & 0o777 == 0o600


def test_credentials_are_masked_unless_asked(running_stack):
    masked = running_stack.cli("credentials", "--format", "json", timeout=30)
    assert masked.returncode == 0
    real = running_stack.credentials()
    for c in real.values():
        if c["auth"].get("password"):
            assert c["auth"]["password"] not in masked.stdout
    import json

    data = json.loads(masked.stdout)
    assert data["resource"] == "apache-airflow" and data["status"] == "running"
    assert [c["id"] for c in data["connections"]] == ["api", "postgres", "resource-data", "redis", "flower"]
    assert data["connections"][0]["connection"]["port"] == int(running_stack.env["APACHE_AIRFLOW_API_PORT"])


def test_wrong_password_gets_no_token(running_stack):
    import requests

    r = requests.post(f"{running_stack.api}/auth/token", json={"username": "admin", "password": "wrong"}, timeout=30)
    assert r.status_code in (401, 403)
    assert requests.get(f"{running_stack.api}/api/v2/dags", timeout=30).status_code in (401, 403)


def test_flower_requires_basic_auth(running_stack):
    import requests

    flower = running_stack.credentials()["flower"]
    url = flower["connection"]["url"]
    assert requests.get(f"{url}/api/workers", timeout=30).status_code == 401
    r = requests.get(f"{url}/api/workers", auth=(flower["auth"]["username"], flower["auth"]["password"]), timeout=30)
    assert r.status_code == 200


def _run_dag(stack, dag_id: str) -> tuple[str, dict]:
    stack.wait_for(lambda: stack.rest("GET", f"/dags/{dag_id}").status_code == 200, 120, f"{dag_id} to be parsed")
    assert stack.rest("PATCH", f"/dags/{dag_id}", json={"is_paused": False}).status_code == 200
    r = stack.rest("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None})
    assert r.status_code == 200, r.text
    run_id = r.json()["dag_run_id"]

    def finished():
        run = stack.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()
        return run if run["state"] in ("success", "failed") else None

    return run_id, stack.wait_for(finished, DAG_RUN_TIMEOUT_S, f"{dag_id} run {run_id}")


@pytest.mark.parametrize("dag_id, task_id, expected_line", [
    ("example_etl", "check", "holds 150 rows, as extracted"),
    ("example_ml", "evaluate", "metrics:"),
])
def test_example_dag_succeeds_and_its_logs_are_readable(running_stack, dag_id, task_id, expected_line):
    run_id, run = _run_dag(running_stack, dag_id)
    tis = running_stack.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    states = {ti["task_id"]: ti["state"] for ti in tis}
    assert run["state"] == "success", states
    assert states and set(states.values()) == {"success"}
    r = running_stack.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1",
                           headers={"Accept": "application/json"})
    assert r.status_code == 200, r.text
    assert expected_line in r.text


def test_example_ml_saved_model_and_metrics_under_the_data_folder(running_stack):
    out = running_stack.home / "data" / "example_ml"
    assert (out / "model.joblib").stat().st_size > 0
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.85


def test_example_etl_loaded_its_table_in_the_resource_postgres(running_stack):
    import psycopg2

    pg = running_stack.credentials()["resource-data"]  # its own role owns resource_data
    conn = psycopg2.connect(host="127.0.0.1", port=pg["connection"]["port"], dbname="resource_data",
                            user=pg["auth"]["username"], password=pg["auth"]["password"])
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM example_etl_iris")
            assert cur.fetchone()[0] == 150
    finally:
        conn.close()


def test_component_logs_are_readable(running_stack):
    proc = running_stack.cli("logs", "scheduler", "--tail", "20", timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) >= 5
    missing = running_stack.cli("logs", "no-such-component", timeout=30)
    assert missing.returncode == 1 and "scheduler" in missing.stderr


def test_second_start_says_already_running(running_stack):
    proc = running_stack.cli("manage", "start", timeout=60)
    assert proc.returncode == 2
    assert "already running" in proc.stderr


def test_restart_keeps_dag_runs_and_comes_back_healthy(running_stack):
    before = running_stack.rest("GET", "/dags/example_etl/dagRuns").json()["total_entries"]
    assert before >= 1
    proc = running_stack.cli("manage", "restart", "--timeout", "240", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert running_stack.status()["healthy"]
    runs = running_stack.rest("GET", "/dags/example_etl/dagRuns").json()
    assert runs["total_entries"] == before
    assert {r["state"] for r in runs["dag_runs"]} == {"success"}


SCALE_FANOUT = """
import time
import pendulum
from airflow.sdk import dag, task


@dag(dag_id="scale_fanout", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def scale_fanout():
    @task
    def work(i):
        time.sleep(3)
        return i

    work.expand(i=list(range(24)))


scale_fanout()
"""


def test_scale_adds_a_worker_that_runs_tasks_then_removes_it(running_stack):
    proc = running_stack.cli("manage", "scale", "--workers", "2", "--timeout", "240", timeout=400)
    assert proc.returncode == 0, proc.stderr
    report = running_stack.status()
    workers = {c["name"]: c for c in report["components"] if c["name"].startswith("worker-")}
    assert set(workers) == {"worker-1", "worker-2"} and all(w["healthy"] for w in workers.values())
    assert report["healthy"]
    # More tasks than worker-1 has slots, each lasting a while: the new worker must take some.
    (running_stack.home / "dags" / "scale_fanout.py").write_text(SCALE_FANOUT)
    log = running_stack.home / "logs" / "components" / "worker-2.log"
    _, run = _run_dag(running_stack, "scale_fanout")
    assert run["state"] == "success"
    assert "Executing workload" in log.read_text(errors="replace")
    again = running_stack.cli("manage", "scale", "--workers", "2", timeout=60)
    assert again.returncode == 2 and "already runs 2" in again.stderr
    pid2 = workers["worker-2"]["pid"]
    proc = running_stack.cli("manage", "scale", "--workers", "1", timeout=400)
    assert proc.returncode == 0, proc.stderr
    names = [c["name"] for c in running_stack.status()["components"]]
    assert "worker-2" not in names and "worker-1" in names
    assert not psutil.pid_exists(pid2) or psutil.Process(pid2).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("component", ["scheduler", "worker-1"])
def test_sigkilled_component_is_restarted_healthy(running_stack, component):
    before = {c["name"]: c for c in running_stack.status()["components"]}[component]
    os.kill(before["pid"], signal.SIGKILL)

    def back():
        report = running_stack.status()
        c = {c["name"]: c for c in report["components"]}[component]
        return report if c["healthy"] and c["pid"] != before["pid"] and report["healthy"] else None

    report = running_stack.wait_for(back, RESTART_TIMEOUT_S, f"{component} to come back healthy")
    assert report["healthy"]


def test_stop_leaves_no_process_and_a_second_stop_says_not_running(running_stack):
    pids = {c["pid"] for c in running_stack.status()["components"]}
    # Everything the stack runs descends from supervisord: note it all, independently of how stop finds it.
    supervisord = psutil.Process(int((running_stack.home / "run" / "supervisord.pid").read_text()))
    tree = [supervisord, *supervisord.children(recursive=True)]
    assert len(tree) > 20 and processes_of(running_stack.home)
    started = time.monotonic()
    proc = running_stack.cli("manage", "stop", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert processes_of(running_stack.home) == []
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
    alive = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [(p.pid, p.name()) for p in alive]
    print(f"stop took {time.monotonic() - started:.1f} s")
    again = running_stack.cli("manage", "stop", timeout=60)
    assert again.returncode == 2 and "not running" in again.stderr
    status = running_stack.cli("status", "--format", "json", timeout=30)
    assert status.returncode == 2


def test_uninstall_keep_data_then_reinstall_then_uninstall(running_stack):
    home = running_stack.home
    proc = running_stack.cli("manage", "uninstall", "--keep-data", timeout=120)
    assert proc.returncode == 0, proc.stderr
    kept = sorted(p.name for p in home.iterdir())
    assert {"postgres", "redis", "dags", "data", "logs", "secrets.env"} <= set(kept)
    assert "airflow" not in kept and "supervisord.conf" not in kept
    secrets_before = (home / "secrets.env").read_text()
    install = running_stack.cli("manage", "install", timeout=300)
    assert install.returncode == 0, install.stderr
    assert (home / "secrets.env").read_text() == secrets_before  # the kept data stays readable
    again = running_stack.cli("manage", "install", timeout=300)
    assert again.returncode == 2 and "already installed" in again.stderr
    gone = running_stack.cli("manage", "uninstall", timeout=120)
    assert gone.returncode == 0, gone.stderr
    assert not home.exists()
    twice = running_stack.cli("manage", "uninstall", timeout=120)
    assert twice.returncode == 2
