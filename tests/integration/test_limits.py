"""Resource limits on a real stack whose home is a small tmpfs: a task past the worker memory limit is
killed while the worker and a parallel task go on; a nearly full disk makes `status` degraded, then
holds new work (the REST API refuses a trigger, a run in flight starts no new task) until space is
freed, and a completely full disk is survived."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import START_TIMEOUT_S, RunningStack, cli, make_home, processes_of, stack_env
from tests.integration.test_faults import _final, _ti, _trigger

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a tmpfs home and memory cgroups")]

HOME_SIZE_MB = 700
MEMORY_LIMIT_MB = 1024
WARN_PERCENT = 30       # warning below 210 MB free
CRITICAL_MB = 100
MB = 2**20
STATE_TIMEOUT_S = 180

MEMORY_DAG = f"""
import time
import pendulum
from airflow.sdk import dag, task


@dag(dag_id="limits_memory", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def limits_memory():
    @task
    def eat():
        chunks = []
        for _ in range({2 * MEMORY_LIMIT_MB} // 64):  # twice the worker's limit, written so it is resident
            chunks.append(b"x" * (64 * 2**20))
        return len(chunks)

    @task
    def steady():
        time.sleep(10)
        return "still here"

    eat()
    steady()


limits_memory()
"""

DISK_DAG = """
import time
import pendulum
from airflow.sdk import dag, task


@dag(dag_id="limits_disk", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def limits_disk():
    @task
    def first():
        time.sleep(20)

    @task
    def second():
        return "ran"

    first() >> second()


limits_disk()
"""


@pytest.fixture(scope="module")
def small_stack():
    home = make_home("af-limits-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={HOME_SIZE_MB}m,mode=755", "tmpfs", str(home)], check=True)
    env = {**stack_env(home), "APACHE_AIRFLOW_WORKER_MEMORY_LIMIT_MB": str(MEMORY_LIMIT_MB),
           "APACHE_AIRFLOW_WORKER_CONCURRENCY": "4", "APACHE_AIRFLOW_DISK_WARN_PERCENT": str(WARN_PERCENT),
           "APACHE_AIRFLOW_DISK_CRITICAL_MB": str(CRITICAL_MB)}
    stack = RunningStack(home, env)
    try:
        proc = cli(env, "manage", "start", "--timeout", str(START_TIMEOUT_S), timeout=START_TIMEOUT_S * 3)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for name, source in (("limits_memory.py", MEMORY_DAG), ("limits_disk.py", DISK_DAG)):
            (home / "dags" / name).write_text(source)
        yield stack
    finally:
        cli(env, "manage", "stop", "--force", timeout=120)
        for p in processes_of(home):
            p.kill()
        subprocess.run(["umount", "-l", str(home)], check=False)
        home.rmdir()


def _worker(stack) -> dict:
    return {c["name"]: c for c in stack.status()["components"]}["worker-1"]


def test_a_task_past_the_memory_limit_fails_and_the_worker_goes_on(small_stack):
    before = _worker(small_stack)
    assert before["memory_limit_mb"] == MEMORY_LIMIT_MB  # the worker runs in its own limited cgroup
    run_id = _trigger(small_stack, "limits_memory")
    run = _final(small_stack, "limits_memory", run_id)
    eat, steady = (_ti(small_stack, "limits_memory", run_id, t) for t in ("eat", "steady"))
    assert run["state"] == "failed"
    assert eat["state"] == "failed" and steady["state"] == "success"
    log = next((small_stack.home / "logs" / "tasks").glob(f"dag_id=limits_memory/run_id={run_id}/task_id=eat/*.log"))
    assert "Likely out of memory error (OOM)" in log.read_text()
    after = _worker(small_stack)
    assert after["pid"] == before["pid"] and after["healthy"]
    assert after["oom_kills"] == before["oom_kills"] + 1
    print(f"worker-1 memory {before['memory_mb']} MB before, {after['memory_mb']} MB after (limit {MEMORY_LIMIT_MB})")


def _fill_to(home: Path, free_mb: int, name: str) -> None:
    """Grow the filler file until the home's file system has free_mb left."""
    st = os.statvfs(home)
    extra = st.f_bavail * st.f_frsize - free_mb * MB
    path = home / "data" / name
    with path.open("ab") as f:
        os.posix_fallocate(f.fileno(), path.stat().st_size, max(extra, 0))


def _disk(stack) -> tuple[dict, int]:
    proc = stack.cli("status", "--format", "json", timeout=60)
    return json.loads(proc.stdout), proc.returncode


def _pool_slots(stack) -> int:
    return stack.rest("GET", "/pools/default_pool").json()["slots"]


def test_nearly_full_disk_degrades_then_holds_new_work_until_space_is_freed(small_stack):
    slots = _pool_slots(small_stack)
    # Warning: degraded, not failed; work is still accepted.
    _fill_to(small_stack.home, CRITICAL_MB + 60, "filler-1")
    report, code = _disk(small_stack)
    assert code == 0 and report["healthy"] and report["degraded"]
    assert report["disk"]["level"] == "warning" and "RETENTION_DAYS" in report["disk"]["advice"]
    text = small_stack.cli("status", timeout=60).stdout
    assert "DEGRADED" in text and "disk warning" in text
    run_id = _trigger(small_stack, "limits_disk")
    small_stack.wait_for(lambda: _ti(small_stack, "limits_disk", run_id, "first")["state"] == "running",
                         STATE_TIMEOUT_S, "the first task to run")

    # Critical: a trigger is refused with the reason; the run in flight starts no new task.
    _fill_to(small_stack.home, CRITICAL_MB // 2, "filler-2")
    report, code = _disk(small_stack)
    assert code == 0 and report["disk"]["level"] == "critical"
    refused = small_stack.rest("POST", "/dags/limits_disk/dagRuns", json={"logical_date": None})
    assert refused.status_code == 507, refused.text
    assert "disk nearly full" in refused.json()["detail"] and "space is freed" in refused.json()["detail"]
    small_stack.wait_for(lambda: _pool_slots(small_stack) == 0, STATE_TIMEOUT_S, "the pools to be held")
    small_stack.wait_for(lambda: _ti(small_stack, "limits_disk", run_id, "first")["state"] == "success",
                         STATE_TIMEOUT_S, "the running task to finish")
    for _ in range(10):  # the next task waits for a slot instead of starting on a full disk
        assert _ti(small_stack, "limits_disk", run_id, "second")["state"] in (None, "scheduled")
        time.sleep(1)
    assert _disk(small_stack)[0]["healthy"]  # PostgreSQL, Redis and every component still fine

    # Space freed: the pools get their slots back, the held task runs, triggers are accepted again.
    for filler in (small_stack.home / "data").glob("filler-*"):
        filler.unlink()
    small_stack.wait_for(lambda: _pool_slots(small_stack) == slots, STATE_TIMEOUT_S, "the pools to be released")
    assert _final(small_stack, "limits_disk", run_id)["state"] == "success"
    report, _ = _disk(small_stack)
    assert report["disk"]["level"] == "ok" and not report["degraded"]
    assert small_stack.rest("GET", "/variables").json()["total_entries"] == 0  # nothing of the hold is left
    assert _final(small_stack, "limits_disk", _trigger(small_stack, "limits_disk"))["state"] == "success"


@pytest.mark.long  # a minute of crash loops: `./cli.sh test long`
def test_a_completely_full_disk_is_survived(small_stack):
    filler = small_stack.home / "data" / "filler-full"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * MB)
                f.flush()
        except OSError:
            pass  # ENOSPC: nothing left
    # Redis refuses writes (its AOF), the worker exits and supervisord may give up on it.
    small_stack.wait_for(lambda: not _disk(small_stack)[0]["healthy"], STATE_TIMEOUT_S, "the full disk to show")
    filler.unlink()
    start = small_stack.cli("manage", "start", timeout=300)  # starts what supervisord gave up on
    assert start.returncode in (0, 2), start.stderr
    small_stack.wait_for(lambda: _disk(small_stack)[0]["healthy"], STATE_TIMEOUT_S, "the stack to be healthy again")
    assert _final(small_stack, "limits_disk", _trigger(small_stack, "limits_disk"))["state"] == "success"
