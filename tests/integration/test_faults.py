"""Faults on the real stack: a component SIGKILLed while work is in flight comes back, and the work
finishes (a task killed mid-run is retried and succeeds). The quick subset that runs in CI."""

from __future__ import annotations

import os
import signal
import time

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.long]  # minutes of recovery: `./cli.sh test long`

SLOW_TASK = """
import time
from datetime import timedelta
import pendulum
from airflow.sdk import dag, task


@dag(dag_id="fault_slow", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def fault_slow():
    @task(retries=1, retry_delay=timedelta(seconds=1))
    def slow():
        time.sleep(20)
        return "done"

    slow()


fault_slow()
"""
RECOVERY_TIMEOUT_S = 300


def _trigger(stack, dag_id: str) -> str:
    stack.wait_for(lambda: stack.rest("GET", f"/dags/{dag_id}").status_code == 200, 120, f"{dag_id} to be parsed")
    assert stack.rest("PATCH", f"/dags/{dag_id}", json={"is_paused": False}).status_code == 200
    r = stack.rest("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None})
    assert r.status_code == 200, r.text
    return r.json()["dag_run_id"]


def _ti(stack, dag_id: str, run_id: str, task_id: str) -> dict:
    return stack.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}").json()


def _final(stack, dag_id: str, run_id: str) -> dict:
    def done():
        run = stack.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()
        return run if run["state"] in ("success", "failed") else None

    return stack.wait_for(done, RECOVERY_TIMEOUT_S, f"{dag_id} run {run_id} to finish")


def _pid(stack, component: str) -> int:
    return {c["name"]: c for c in stack.status()["components"]}[component]["pid"]


def _healthy_again(stack, component: str, old_pid: int) -> float:
    started = time.monotonic()

    def back():
        report = stack.status()
        c = {c["name"]: c for c in report["components"]}[component]
        return report["healthy"] and c["pid"] != old_pid

    stack.wait_for(back, RECOVERY_TIMEOUT_S, f"{component} to come back healthy")
    return time.monotonic() - started


def test_worker_killed_mid_task_then_the_task_is_retried_and_succeeds(running_stack):
    (running_stack.home / "dags" / "fault_slow.py").write_text(SLOW_TASK)
    run_id = _trigger(running_stack, "fault_slow")
    running_stack.wait_for(lambda: _ti(running_stack, "fault_slow", run_id, "slow")["state"] == "running", 180,
                           "the slow task to run")
    pid = _pid(running_stack, "worker-1")
    os.killpg(os.getpgid(pid), signal.SIGKILL)  # the worker, its pool and the task: a host going down
    took = _healthy_again(running_stack, "worker-1", pid)
    print(f"worker-1 healthy again {took:.1f} s after SIGKILL")
    run = _final(running_stack, "fault_slow", run_id)
    ti = _ti(running_stack, "fault_slow", run_id, "slow")
    assert run["state"] == "success", ti
    assert ti["state"] == "success" and ti["try_number"] == 2  # the killed try failed, the retry ran


@pytest.mark.parametrize("component", ["redis", "postgres"])
def test_datastore_killed_then_the_stack_heals_and_runs_work(running_stack, component):
    pid = _pid(running_stack, component)
    os.kill(pid, signal.SIGKILL)
    took = _healthy_again(running_stack, component, pid)
    print(f"{component} SIGKILLed: stack healthy again in {took:.1f} s")
    run_id = _trigger(running_stack, "example_taskflow_xcom")
    assert _final(running_stack, "example_taskflow_xcom", run_id)["state"] == "success"
