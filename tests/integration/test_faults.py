"""Faults on the real stack while a workload is in flight (mapped tasks, a deferrable sensor in the
triggerer, a task that needs its retry): every component SIGKILLed in turn, a worker hung (SIGSTOP),
the whole stack restarted mid-run, everything killed at once as by a power cut, and a stop that
outlasts a task. After each: the stack is healthy again, every run ends in success, no task instance
is left queued or running, every try's log is readable, nothing is lost.

Figures (time to healthy, runs affected, runs lost) are printed as a table at the end of the module
and written to test-artifacts/faults.json. The whole suite takes ~20 minutes: `./cli.sh test long`.
The quick subset in CI (`test all`) runs on the session's stack: the triggerer killed with a sensor
deferred, and a stop that outlasts a task (queued again, run at the next start).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.conftest import REPO, processes_of, start_stack, stop_and_remove

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "faults"
WORKLOAD = "fault_workload"
RUNS = 2  # runs in flight at each fault
EXPECTED_TRIES = {"flaky": 2}  # every other task succeeds on its first try when nothing goes wrong
FINAL = {"success", "failed", "skipped", "upstream_failed", "removed"}
RECOVERY_TIMEOUT_S = 420
STOP_GRACE_S = 10  # the fault stack's: keeps `manage stop` with a task running short
ROWS: list[dict] = []


@pytest.fixture(scope="module", autouse=True)
def fault_table():
    """Keep the figures of every fault of the module (conftest's terminal summary prints them)."""
    yield
    if ROWS:
        out = REPO / "test-artifacts" / "faults.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(ROWS, indent=1))


def table() -> list[str]:
    if not ROWS:
        return []
    return ["fault | back to healthy | runs affected | runs lost | tries redone",
            *(f"{r['fault']} | {r['healthy_after_s']:.1f} s | {r['runs_affected']}/{r['runs']} | {r['runs_lost']} | "
              f"{', '.join(r['redone']) or '-'}" for r in ROWS)]


@pytest.fixture(scope="module")
def fault_stack():
    """A stack of its own for the long suite: two workers (one can hang while the other takes over)
    and a short stop grace."""
    stack = start_stack("af-faults-", workers=2, extra_env={"APACHE_AIRFLOW_STOP_GRACE_SECONDS": str(STOP_GRACE_S)})
    _install_dags(stack)
    yield stack
    stop_and_remove(stack)


def _install_dags(stack) -> None:
    for name in ("fault_workload.py", "fault_long.py"):
        shutil.copy(FIXTURES / name, stack.home / "dags" / name)
    for dag_id in (WORKLOAD, "fault_long"):
        stack.wait_for(lambda d=dag_id: stack.rest("GET", f"/dags/{d}").status_code == 200, 180, f"{dag_id} to be parsed")
        assert stack.rest("PATCH", f"/dags/{dag_id}", json={"is_paused": False}).status_code == 200


# ---------------------------------------------------------------- the REST API's view

def _trigger(stack, dag_id: str) -> str:
    """A manual run of dag_id, once the DAG is parsed and unpaused (test_limits uses it too)."""
    stack.wait_for(lambda: stack.rest("GET", f"/dags/{dag_id}").status_code == 200, 180, f"{dag_id} to be parsed")
    assert stack.rest("PATCH", f"/dags/{dag_id}", json={"is_paused": False}).status_code == 200
    r = stack.rest("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None})
    assert r.status_code == 200, r.text
    return r.json()["dag_run_id"]


def _ti(stack, dag_id: str, run_id: str, task_id: str) -> dict:
    return stack.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}").json()


def _final(stack, dag_id: str, run_id: str) -> dict:
    """The run, once final."""
    def done():
        run = stack.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()
        return run if run["state"] in ("success", "failed") else None

    return stack.wait_for(done, RECOVERY_TIMEOUT_S, f"{dag_id} run {run_id} to finish")


def _tis(stack, dag_id: str, run_id: str) -> list[dict]:
    r = stack.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
    assert r.status_code == 200, r.text
    return r.json()["task_instances"]


def _pid(stack, component: str) -> int:
    return {c["name"]: c for c in stack.status()["components"]}[component]["pid"]


def _workload_in_flight(stack, runs: list[str], also: str | None = None) -> None:
    """Wait until a mapped `work` task runs (and, for the triggerer, `wait` is deferred)."""
    def ready():
        tis = [ti for run in runs for ti in _tis(stack, WORKLOAD, run)]
        working = any(ti["task_id"] == "work" and ti["state"] == "running" for ti in tis)
        deferred = also is None or any(ti["task_id"] == "wait" and ti["state"] == "deferred" for ti in tis)
        return working and deferred

    stack.wait_for(ready, 240, "the workload to be in flight", poll=0.5)


def _healthy_again(stack, component: str | None, old_pid: int | None, since: float) -> float:
    def back():
        report = stack.status()
        if component is None:
            return report["healthy"]
        c = {c["name"]: c for c in report["components"]}[component]
        return report["healthy"] and c["pid"] != old_pid

    stack.wait_for(back, RECOVERY_TIMEOUT_S, f"{component or 'the stack'} to be healthy again")
    return time.monotonic() - since


def _settle(stack, dag_id: str, runs: list[str]) -> dict[str, list[dict]]:
    """Every run final; returns the task instances of each."""
    def done():
        states = [stack.rest("GET", f"/dags/{dag_id}/dagRuns/{run}").json()["state"] for run in runs]
        return all(s in ("success", "failed") for s in states)

    stack.wait_for(done, RECOVERY_TIMEOUT_S, f"runs {runs} to finish")
    return {run: _tis(stack, dag_id, run) for run in runs}


def _check(stack, fault: str, dag_id: str, runs: list[str], healthy_after: float) -> dict:
    """Every run succeeded, no task instance is left unfinished, every try's log is readable."""
    by_run = _settle(stack, dag_id, runs)
    lost = [run for run in runs if stack.rest("GET", f"/dags/{dag_id}/dagRuns/{run}").json()["state"] != "success"]
    redone, affected = [], set()
    for run, tis in by_run.items():
        for ti in tis:
            assert ti["state"] in FINAL, f"{fault}: {ti['task_id']}[{ti['map_index']}] left {ti['state']} in {run}"
            assert ti["state"] == "success", f"{fault}: {ti['task_id']}[{ti['map_index']}] {ti['state']} in {run}"
            extra = ti["try_number"] - EXPECTED_TRIES.get(ti["task_id"], 1)
            if extra > 0:
                affected.add(run)
                index = f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""
                redone.append(f"{ti['task_id']}{index} x{extra}")
            for try_number in range(1, ti["try_number"] + 1):
                _assert_log(stack, dag_id, run, ti, try_number)
    row = {"fault": fault, "healthy_after_s": round(healthy_after, 1), "runs": len(runs),
           "runs_affected": len(affected), "runs_lost": len(lost), "redone": redone}
    ROWS.append(row)
    assert not lost, f"{fault}: runs not successful: {lost}"
    return row


def _assert_log(stack, dag_id: str, run: str, ti: dict, try_number: int) -> None:
    r = stack.rest("GET", f"/dags/{dag_id}/dagRuns/{run}/taskInstances/{ti['task_id']}/logs/{try_number}",
                   params={"map_index": ti["map_index"], "full_content": "true"},
                   headers={"Accept": "application/json"})
    assert r.status_code == 200, f"log of try {try_number} of {run}: {r.status_code} {r.text[:300]}; {ti}"
    events = [e.get("event", "") for e in r.json().get("content", []) if isinstance(e, dict)]
    assert any(events), f"empty log: {ti['task_id']}[{ti['map_index']}] try {try_number} of {run}"


def _no_task_left_unfinished(stack) -> None:
    for state in ("queued", "running", "restarting", "deferred", "up_for_retry", "scheduled"):
        r = stack.rest("GET", "/dags/~/dagRuns/~/taskInstances", params={"state": state, "limit": 5})
        assert r.json()["total_entries"] == 0, f"task instances left {state}: {r.json()['task_instances']}"


def _busiest_worker(stack) -> str:
    """The worker whose process tree is largest: the one running the most task processes."""
    sizes = {}
    for c in stack.status()["components"]:
        if c["name"].startswith("worker-"):
            sizes[c["name"]] = len(psutil.Process(c["pid"]).children(recursive=True))
    return max(sizes, key=sizes.get)


def _sigkill_during_workload(stack, component: str) -> dict:
    runs = [_trigger(stack, WORKLOAD) for _ in range(RUNS)]
    _workload_in_flight(stack, runs, also="wait" if component == "triggerer" else None)
    if component == "worker":
        component = _busiest_worker(stack)
    pid = _pid(stack, component)
    started = time.monotonic()
    if component.startswith("worker-"):
        os.killpg(os.getpgid(pid), signal.SIGKILL)  # the worker, its pool and its tasks: a host going down
    else:
        os.kill(pid, signal.SIGKILL)
    took = _healthy_again(stack, component, pid, started)
    row = _check(stack, f"{component} SIGKILLed", WORKLOAD, runs, took)
    _no_task_left_unfinished(stack)
    return row


# ---------------------------------------------------------------- the quick subset (CI)

def test_triggerer_killed_with_a_sensor_deferred_then_every_run_succeeds(running_stack):
    _install_dags(running_stack)
    _sigkill_during_workload(running_stack, "triggerer")


def test_stop_kills_a_task_past_the_grace_and_queues_it_again_for_the_next_start(running_stack):
    _install_dags(running_stack)
    _stop_then_start_with_a_task_past_the_grace(running_stack)


def _stop_then_start_with_a_task_past_the_grace(stack) -> None:
    run = _trigger(stack, "fault_long")
    stack.wait_for(lambda: _tis(stack, "fault_long", run)[0]["state"] == "running", 240, "the long task to run")
    started = time.monotonic()
    stop = stack.cli("manage", "stop", timeout=600)
    stopped_in = time.monotonic() - started
    left = processes_of(stack.home)
    started = time.monotonic()
    proc = stack.cli("manage", "start", "--timeout", "240", timeout=900)  # first: later tests need the stack
    assert proc.returncode == 0, proc.stderr
    assert stop.returncode == 0, stop.stderr
    assert "queued again" in stop.stdout + stop.stderr, stop.stdout + stop.stderr
    assert left == []
    row = _check(stack, f"manage stop with a task past the grace (stop took {stopped_in:.0f} s)", "fault_long", [run],
                 time.monotonic() - started)
    ti = _tis(stack, "fault_long", run)[0]
    assert ti["try_number"] == 2, ti  # no retries configured: the stop queued it again, it was not failed
    assert row["runs_lost"] == 0


# ---------------------------------------------------------------- the whole suite (`test long`)

@pytest.mark.long
@pytest.mark.parametrize("component", ["scheduler", "api-server", "dag-processor", "triggerer", "worker",
                                       "redis", "postgres"])
def test_component_sigkilled_during_the_workload_then_every_run_succeeds(fault_stack, component):
    _sigkill_during_workload(fault_stack, component)


@pytest.mark.long
def test_hung_worker_its_tasks_are_run_elsewhere(fault_stack):
    """SIGSTOP a worker's whole process group (a hung host): its tasks stop heartbeating, the scheduler
    fails them after the heartbeat timeout and their retries run on the other worker."""
    runs = [_trigger(fault_stack, WORKLOAD) for _ in range(RUNS)]
    _workload_in_flight(fault_stack, runs)
    hung = _busiest_worker(fault_stack)
    pgid = os.getpgid(_pid(fault_stack, hung))
    os.killpg(pgid, signal.SIGSTOP)
    try:
        seen = fault_stack.wait_for(
            lambda: not {c["name"]: c for c in fault_stack.status()["components"]}[hung]["healthy"], 120,
            f"status to report {hung} unresponsive")
        assert seen
        by_run = _settle(fault_stack, WORKLOAD, runs)
    finally:
        os.killpg(pgid, signal.SIGCONT)
    started = time.monotonic()
    took = _healthy_again(fault_stack, None, None, started)
    assert by_run
    _check(fault_stack, f"{hung} hung (SIGSTOP) until its tasks ran elsewhere", WORKLOAD, runs, took)
    _no_task_left_unfinished(fault_stack)


@pytest.mark.long
def test_restart_of_the_whole_stack_mid_run_then_every_run_succeeds(fault_stack):
    runs = [_trigger(fault_stack, WORKLOAD) for _ in range(RUNS)]
    _workload_in_flight(fault_stack, runs)
    started = time.monotonic()
    proc = fault_stack.cli("manage", "restart", "--timeout", "240", timeout=900)
    assert proc.returncode == 0, proc.stderr
    _check(fault_stack, "manage restart mid-run", WORKLOAD, runs, time.monotonic() - started)
    _no_task_left_unfinished(fault_stack)


@pytest.mark.long
def test_stop_with_a_task_past_the_grace_on_the_fault_stack(fault_stack):
    _stop_then_start_with_a_task_past_the_grace(fault_stack)


@pytest.mark.long
def test_everything_killed_at_once_then_start_keeps_all_state(fault_stack):
    """A power cut: every process of the stack SIGKILLed at once, supervisord and PostgreSQL included.
    `manage start` comes back with every DAG, run, connection, variable, user and log."""
    stack = fault_stack
    conn = {"connection_id": "fault_conn", "conn_type": "postgres", "host": "db.example", "login": "u"}
    assert stack.rest("POST", "/connections", json=conn).status_code in (201, 409)
    assert stack.rest("POST", "/variables", json={"key": "fault_var", "value": "kept"}).status_code in (201, 409)
    user = {"username": "fault_user", "first_name": "F", "last_name": "U", "email": "fault@example.com",
            "password": "not-a-real-secret-42", "roles": [{"name": "Viewer"}]}
    users = f"{stack.api}/auth/fab/v1/users"
    r = requests.post(users, json=user, headers={"Authorization": f"Bearer {stack.token()}"}, timeout=30)
    assert r.status_code in (200, 409), r.text
    dags = {d["dag_id"] for d in stack.rest("GET", "/dags", params={"limit": 100}).json()["dags"]}
    before_runs = {d: stack.rest("GET", f"/dags/{d}/dagRuns", params={"limit": 1}).json()["total_entries"]
                   for d in (WORKLOAD, "fault_long")}
    runs = [_trigger(stack, WORKLOAD) for _ in range(RUNS)]
    _workload_in_flight(stack, runs)
    supervisord = psutil.Process(int((stack.home / "run" / "supervisord.pid").read_text()))
    victims = {p.pid: p for p in [supervisord, *supervisord.children(recursive=True), *processes_of(stack.home)]}
    for p in victims.values():
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(list(victims.values()), timeout=30)
    assert processes_of(stack.home) == []
    started = time.monotonic()
    proc = stack.cli("manage", "start", "--timeout", "240", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    took = time.monotonic() - started
    _check(stack, "every process SIGKILLed at once, then manage start", WORKLOAD, runs, took)
    _no_task_left_unfinished(stack)
    assert {d["dag_id"] for d in stack.rest("GET", "/dags", params={"limit": 100}).json()["dags"]} == dags
    assert stack.rest("GET", "/connections/fault_conn").json()["host"] == "db.example"
    assert stack.rest("GET", "/variables/fault_var").json()["value"] == "kept"
    for dag_id, n in before_runs.items():
        total = stack.rest("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 1}).json()["total_entries"]
        assert total == n + (RUNS if dag_id == WORKLOAD else 0)
    r = requests.get(f"{users}/fault_user", headers={"Authorization": f"Bearer {stack.token()}"}, timeout=30)
    assert r.status_code == 200 and [role["name"] for role in r.json()["roles"]] == ["Viewer"]
