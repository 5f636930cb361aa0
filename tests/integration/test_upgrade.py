"""`manage upgrade` and `manage rollback` on the real stack, from an older pinned set to the current one:
from the previous set (3.3.1, the same schema) and from 3.2.2 (one minor release back: 14 schema migrations
on the way up, and back down by the restore).

A home is installed on the older set (its own venv built from PyPI, the reason this is `long`), started
and populated (DAG runs that succeeded, a connection, a variable); the bad inputs are refused with the
home unchanged; from 3.2.2 a real migration failure (a table in the way) is rolled back by itself; then it is upgraded to the current set (the venv the tests run from holds it), and the
REST API must show the same DAGs, runs, task instances, connections, variables and users, and run a new
DAG run; then it is rolled back and the previous Airflow must run again with the pre-upgrade data.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from airflow_resource import AIRFLOW_VERSION
from airflow_resource.config import pinned_sets
from tests.conftest import START_TIMEOUT_S, RunningStack, cli, make_home, processes_of, stack_env
from tests.integration.test_backup import CONNECTION, VARIABLE, api_view, manifest_of
from tests.integration.test_stack import _run_dag

pytestmark = [pytest.mark.integration, pytest.mark.long]

NEW = AIRFLOW_VERSION
oldER_SETS = ("3.3.1", "3.2.2")
INSTALL_TIMEOUT_S = 1800  # a venv from PyPI on a loaded machine
UPGRADE_TIMEOUT_S = 1800


@pytest.fixture(scope="module", params=oldER_SETS)
def old(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def stack(old):
    home = make_home("af-upg-")
    st = RunningStack(home, stack_env(home))
    yield st
    cli(st.env, "manage", "stop", "--force", timeout=180)
    for p in processes_of(home):
        p.kill()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def state(stack):
    return {}


def record(st: RunningStack) -> dict:
    return json.loads((st.home / pinned_sets.HOME_RECORD).read_text())


def api_version(st: RunningStack) -> str:
    return st.rest("GET", "/version").json()["version"]


def timed(st: RunningStack, *args: str, timeout: float) -> tuple:
    t = time.monotonic()
    proc = st.cli(*args, timeout=timeout)
    return proc, time.monotonic() - t


def move(st: RunningStack, action: str, expect: tuple[str, str]) -> tuple[dict, float, str]:
    """`manage upgrade|rollback --yes --format json`: its report, how long it took, what it printed."""
    proc, took = timed(st, "manage", action, "--yes", "--format", "json", "--timeout", str(START_TIMEOUT_S),
                       timeout=UPGRADE_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert (report["from"]["airflow"], report["to"]["airflow"]) == expect
    return report, took, proc.stderr


def test_install_and_start_on_the_older_set(stack, state, old):
    proc, state["install_s"] = timed(stack, "manage", "install", "--pinned-set", old, timeout=INSTALL_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rec = record(stack)
    assert (rec["pinned_set"], rec["airflow"]) == (old, old)
    assert rec["venv"] == str(stack.home / "venvs" / old)
    assert (stack.home / "venvs" / old / "bin" / "airflow").exists()
    proc, state["start_s"] = timed(stack, "manage", "start", "--timeout", str(START_TIMEOUT_S), timeout=START_TIMEOUT_S * 3)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = stack.status()
    assert status["healthy"] and (status["airflow_version"], status["pinned_set"]) == (old, old)
    assert api_version(stack) == old
    info = json.loads(stack.cli("info", "--json", timeout=60).stdout)["this_home"]
    assert (info["pinned_set"], info["airflow"], info["rollback_to"]) == (old, old, None)
    print(f"\ninstall on {old} (venv from PyPI): {state['install_s']:.0f} s; first start: {state['start_s']:.0f} s")


def test_populate(stack, state):
    for _ in range(2):
        assert _run_dag(stack, "example_bash")[1]["state"] == "success"
    assert _run_dag(stack, "example_taskflow_xcom")[1]["state"] == "success"
    assert stack.rest("POST", "/connections", json=CONNECTION).status_code == 201
    assert stack.rest("POST", "/variables", json=VARIABLE).status_code == 201
    state["before"] = api_view(stack)
    assert len(state["before"]["runs"]) == 3


def test_bad_upgrades_are_refused_and_change_nothing(stack, state, old):
    before = (stack.home / pinned_sets.HOME_RECORD).read_text()
    cases = [
        (("manage", "upgrade", "--to", "9.9.9", "--yes"), 1, "unknown pinned set '9.9.9'"),
        (("manage", "upgrade", "--to", old, "--yes"), 2, f"already runs pinned set {old}"),
        (("manage", "rollback", "--yes"), 2, "no upgrade to roll back"),
        (("manage", "upgrade"), 1, "not confirmed"),  # no terminal, no --yes
        (("manage", "install", "--pinned-set", NEW), 1, f"installed on pinned set {old}, not {NEW}"),
    ]
    for args, code, message in cases:
        proc = stack.cli(*args, timeout=120)
        assert (proc.returncode, message in proc.stderr) == (code, True), (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert (stack.home / pinned_sets.HOME_RECORD).read_text() == before
    assert stack.status()["healthy"] and api_version(stack) == old


def metadata_sql(st: RunningStack, statement: str) -> None:
    import psycopg2

    pg = st.credentials()["postgres"]
    conn = psycopg2.connect(host="127.0.0.1", port=pg["connection"]["port"], dbname=pg["connection"]["database"],
                            user=pg["auth"]["username"], password=pg["auth"]["password"])
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


def test_a_failed_migration_rolls_back_by_itself(stack, state, old):
    """A table in the way of a 3.3.0 migration (0112 creates task_state_store) makes the real
    `airflow db migrate` fail: the upgrade must put the home back on the older set, database restored."""
    if old == "3.3.1":
        pytest.skip("3.3.1 and 3.3.2 ship the same migrations: none to make fail")
    metadata_sql(stack, "CREATE TABLE task_state_store (in_the_way integer)")
    before = (stack.home / pinned_sets.HOME_RECORD).read_text()
    proc, took = timed(stack, "manage", "upgrade", "--yes", "--format", "json", "--timeout", str(START_TIMEOUT_S),
                       timeout=UPGRADE_TIMEOUT_S)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "failed and was rolled back" in proc.stderr and "airflow db migrate failed" in proc.stderr, proc.stderr
    assert "task_state_store" in proc.stderr and "Traceback (most recent call last)" not in proc.stderr.split("error:")[0]
    assert proc.stdout == ""  # no report: a program sees the exit code
    assert (stack.home / pinned_sets.HOME_RECORD).read_text() == before
    status = stack.status()
    assert status["healthy"] and (status["airflow_version"], status["pinned_set"]) == (old, old)
    assert api_version(stack) == old
    assert api_view(stack) == state["before"]
    metadata_sql(stack, "DROP TABLE task_state_store")  # the restored database still has it
    print(f"\nfailed upgrade {old} -> {NEW}, rolled back by itself: {took:.0f} s")


def test_upgrade_to_the_current_set_keeps_everything(stack, state, old):
    report, took, printed = move(stack, "upgrade", (old, NEW))
    backup = Path(report["backup"])
    m = manifest_of(backup)
    assert (m["kind"], m["airflow_version"], m["stack_running"]) == ("pre-upgrade", old, False)
    assert str(backup) in printed  # says where the backup went
    rec = record(stack)
    assert (rec["pinned_set"], rec["previous"]["pinned_set"], rec["previous"]["backup"]) == (NEW, old, str(backup))
    assert (stack.home / "venvs" / old / "bin" / "airflow").exists()  # kept for the rollback
    status = stack.status()
    assert status["healthy"] and (status["airflow_version"], status["pinned_set"]) == (NEW, NEW)
    assert api_version(stack) == NEW
    assert api_view(stack) == state["before"]
    run_id, run = _run_dag(stack, "example_bash")
    assert run["state"] == "success"
    state.update(upgrade_s=took, upgrade_report=report, run_after_upgrade=run_id)
    print(f"\nupgrade {old} -> {NEW}: {took:.0f} s; report timings: {report['timings_s']}")


def test_rollback_brings_back_the_previous_airflow_and_the_pre_upgrade_data(stack, state, old):
    report, took, _printed = move(stack, "rollback", (NEW, old))
    m = manifest_of(Path(report["backup"]))  # what the upgraded stack held, kept
    assert (m["kind"], m["airflow_version"]) == ("pre-rollback", NEW)
    rec = record(stack)
    assert (rec["pinned_set"], rec["venv"]) == (old, str(stack.home / "venvs" / old)) and "previous" not in rec
    status = stack.status()
    assert status["healthy"] and (status["airflow_version"], status["pinned_set"]) == (old, old)
    assert api_version(stack) == old
    assert api_view(stack) == state["before"]  # the run made after the upgrade is gone with its database
    assert _run_dag(stack, "example_bash")[1]["state"] == "success"
    proc = stack.cli("manage", "rollback", "--yes", timeout=120)
    assert proc.returncode == 2 and "no upgrade to roll back" in proc.stderr
    print(f"\nrollback {NEW} -> {old}: {took:.0f} s")


def test_stop_leaves_nothing(stack):
    assert stack.cli("manage", "stop", timeout=180).returncode == 0
    assert processes_of(stack.home) == []
