"""Prometheus metrics on the real stack: Airflow's statsd -> the metrics component -> /metrics -> a real Prometheus.

One DAG run (example_bash) is triggered for the module; the tests then read the metric families it
moved on /metrics, and a Prometheus server (Debian's `prometheus`, started here in a temp dir on a
free port) scrapes the endpoint and answers a PromQL query for the task that just ran.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port
from tests.integration.test_stack import _run_dag

pytestmark = pytest.mark.integration

DAG_ID = "example_bash"
METRICS_TIMEOUT_S = 90      # statsd is sent as it happens; gauges every scheduler loop / heartbeat
PROMETHEUS_READY_S = 60
SCRAPE_INTERVAL = "1s"
NO_PROXY = {"http": "", "https": ""}


def metrics_url(stack) -> str:
    return f"http://127.0.0.1:{stack.env['APACHE_AIRFLOW_METRICS_PORT']}/metrics"


def scrape(stack) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] from the stack's /metrics, parsed by prometheus_client."""
    r = requests.get(metrics_url(stack), timeout=10, proxies=NO_PROXY)
    assert r.status_code == 200, r.status_code
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(samples, name: str, **labels: str) -> float | None:
    """Sum of the samples of `name` whose labels include `labels`; None when there is none."""
    found = [v for lab, v in samples.get(name, []) if all(lab.get(k) == want for k, want in labels.items())]
    return sum(found) if found else None


@pytest.fixture(scope="module")
def dag_run(running_stack):
    """example_bash run once to success; its task ids."""
    before = scrape(running_stack)
    run_id, run = _run_dag(running_stack, DAG_ID)
    tis = running_stack.rest("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    states = {ti["task_id"]: ti["state"] for ti in tis}
    assert run["state"] == "success", states
    return {"run_id": run_id, "tasks": sorted(states), "before": before}


def test_metrics_component_is_healthy_in_status(running_stack):
    comps = {c["name"]: c for c in running_stack.status()["components"]}
    m = comps["metrics"]
    assert m["healthy"] and m["state"] == "RUNNING", m
    assert m["port"] == int(running_stack.env["APACHE_AIRFLOW_METRICS_PORT"])
    assert m["detail"] == "HTTP 200"


def test_scheduler_heartbeat_moves(running_stack):
    first = value(scrape(running_stack), "airflow_scheduler_heartbeat_total")
    running_stack.wait_for(
        lambda: (value(scrape(running_stack), "airflow_scheduler_heartbeat_total") or 0) > (first or 0),
        METRICS_TIMEOUT_S, "the scheduler heartbeat counter to grow", poll=2)


def test_dag_run_moves_task_and_dagrun_families(running_stack, dag_run):
    tasks = dag_run["tasks"]
    before = dag_run["before"]

    def moved():
        now = scrape(running_stack)
        missing = []
        for task in tasks:
            for name, labels in (("airflow_ti_finish_total", {"state": "success"}), ("airflow_ti_start_total", {}),
                                 ("airflow_task_duration_seconds_count", {})):
                was = value(before, name, dag_id=DAG_ID, task_id=task, **labels) or 0
                if (value(now, name, dag_id=DAG_ID, task_id=task, **labels) or 0) <= was:
                    missing.append(f"{name}{{task_id={task}}}")
        was = value(before, "airflow_dagrun_duration_seconds_count", dag_id=DAG_ID, state="success") or 0
        if (value(now, "airflow_dagrun_duration_seconds_count", dag_id=DAG_ID, state="success") or 0) <= was:
            missing.append("airflow_dagrun_duration_seconds_count")
        return now if not missing else None

    now = running_stack.wait_for(moved, METRICS_TIMEOUT_S, f"the task and dag run families of {DAG_ID} to move",
                                 poll=2)
    assert value(now, "airflow_dagrun_duration_seconds_sum", dag_id=DAG_ID, state="success") > 0
    assert value(now, "airflow_ti_successes_total") >= len(tasks)


@pytest.mark.parametrize("name, labels", [
    ("airflow_executor_open_slots", {"executor": "CeleryExecutor"}),
    ("airflow_executor_running_tasks", {"executor": "CeleryExecutor"}),
    ("airflow_executor_queued_tasks", {"executor": "CeleryExecutor"}),
    ("airflow_pool_open_slots", {"pool": "default_pool"}),
    ("airflow_scheduler_loop_duration_seconds_count", {}),
    ("airflow_dag_processing_total_parse_time", {}),
    ("airflow_dag_processing_import_errors", {}),
    ("airflow_dag_processing_last_duration_seconds_count", {}),
    ("airflow_triggerer_capacity_left", {}),
    ("airflow_dag_processor_heartbeat_total", {}),
    ("airflow_celery_queue_length", {"queue": "default"}),
    ("airflow_celery_workers", {}),
])
def test_stack_gauges_and_timers_are_served(running_stack, name, labels):
    running_stack.wait_for(lambda: value(scrape(running_stack), name, **labels) is not None,
                           METRICS_TIMEOUT_S, f"{name}{labels} on /metrics", poll=2)


def test_celery_workers_gauge_counts_the_workers(running_stack):
    workers = int(running_stack.env["APACHE_AIRFLOW_WORKERS"])
    running_stack.wait_for(lambda: value(scrape(running_stack), "airflow_celery_workers") == workers,
                           METRICS_TIMEOUT_S, f"airflow_celery_workers == {workers}", poll=2)


def test_no_statsd_event_conflicts_or_invalid_lines(running_stack, dag_run):
    now = scrape(running_stack)
    assert (value(now, "statsd_exporter_events_total") or 0) > 0
    assert not value(now, "statsd_exporter_events_conflict_total"), now.get("statsd_exporter_events_conflict_total")
    assert not value(now, "statsd_exporter_lines_invalid_total")


# ---------------------------------------------------------------- a real Prometheus

@pytest.fixture(scope="module")
def prometheus(running_stack):
    binary = shutil.which("prometheus")
    if not binary:
        pytest.fail("Debian's `prometheus` package is not installed (apt-get install prometheus; .ci/run does)")
    tmp = Path(tempfile.mkdtemp(prefix="af-prom-"))
    port = free_port()
    target = f"127.0.0.1:{running_stack.env['APACHE_AIRFLOW_METRICS_PORT']}"
    (tmp / "prometheus.yml").write_text(
        "global:\n"
        f"  scrape_interval: {SCRAPE_INTERVAL}\n"
        f"  evaluation_interval: {SCRAPE_INTERVAL}\n"
        "scrape_configs:\n"
        "  - job_name: airflow\n"
        f"    scrape_timeout: {SCRAPE_INTERVAL}\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    log = open(tmp / "prometheus.log", "w")
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h",
         f"--web.console.templates={tmp}", f"--web.console.libraries={tmp}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PROMETHEUS_READY_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited {proc.returncode}:\n{(tmp / 'prometheus.log').read_text()[-3000:]}")
            try:
                if requests.get(f"{url}/-/ready", timeout=2, proxies=NO_PROXY).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus not ready in {PROMETHEUS_READY_S} s:\n"
                            f"{(tmp / 'prometheus.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def promql(url: str, query: str) -> list[dict]:
    r = requests.get(f"{url}/api/v1/query", params={"query": query}, timeout=10, proxies=NO_PROXY)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_the_endpoint(running_stack, prometheus):
    running_stack.wait_for(lambda: [s for s in promql(prometheus, 'up{job="airflow"}') if s["value"][1] == "1"],
                           PROMETHEUS_READY_S, "Prometheus to scrape the metrics endpoint (up == 1)")


def test_promql_returns_the_count_of_the_task_that_just_ran(running_stack, dag_run, prometheus):
    task = dag_run["tasks"][0]
    query = f'sum(airflow_ti_finish_total{{dag_id="{DAG_ID}", task_id="{task}", state="success"}})'

    def answered():
        served = value(scrape(running_stack), "airflow_ti_finish_total", dag_id=DAG_ID, task_id=task, state="success")
        result = promql(prometheus, query)
        if served and result and float(result[0]["value"][1]) == served:
            return served
        return None

    count = running_stack.wait_for(answered, PROMETHEUS_READY_S, f"Prometheus to answer {query} like /metrics",
                                   poll=1)
    assert count >= 1
    by_task = promql(prometheus, f'sum by (task_id) (airflow_ti_finish_total{{dag_id="{DAG_ID}"}})')
    assert {s["metric"]["task_id"] for s in by_task} >= set(dag_run["tasks"])
