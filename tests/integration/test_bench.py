"""The benchmark harness runs end to end on quick sizes (figures are printed, never asserted)."""

from __future__ import annotations

import json
import numbers
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

EXPECTED = [
    "first start (initdb, migration included) to healthy", "later start to healthy", "stop",
    "processes left after stop", "memory idle after start", "idle CPU", "one-task trigger to success p50",
    "two-task chain trigger to success p50", "20-task fan-out wall", "20-task fan-out CPU-seconds per task",
    "40-task workload tasks per minute", "memory after the workloads", "5 DAG files registered",
    "health endpoint p99", "status p99", "list runs (50 runs) p99", "scale-up: one more worker running a task",
    "memory after the workloads by component", "items per minute, batched",
    "scheduling rate (40 task instances to queued, no worker)",
    "scheduler + PostgreSQL CPU-seconds per task instance scheduled",
]


BASELINE = ["first start (initdb, migration included) to healthy", "one-task trigger to success p50",
            "two-task chain trigger to success p50", "20-task fan-out wall", "memory idle after start", "stop"]


def _bench(tmp_path, *flags: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "airflow_resource", "bench", "--quick", *flags,
                           "--output", str(out)], cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def test_quick_benchmark_runs_and_writes_every_figure(tmp_path):
    proc, data = _bench(tmp_path)
    figures = data["figures"]
    missing = [k for k in EXPECTED if k not in figures]
    assert missing == []
    for key, fig in figures.items():
        if key.endswith("by component"):  # "worker-1 0.140, api-server 0.117, ..."
            assert fig["value"].startswith(("worker-1 ", "api-server ", "scheduler ", "postgres ", "dag-processor ")), key
        else:
            assert isinstance(fig["value"], numbers.Number) and fig["value"] >= 0, key
    assert figures["processes left after stop"]["value"] == 0
    assert data["machine"]["quick"] is True and data["machine"]["cores"] >= 1
    assert data["machine"]["load_at_start"] >= 0 and data["machine"]["load_at_end"] >= 0
    assert "one-task trigger to success p50" in proc.stdout  # the table is printed
    assert "baseline" not in data


def test_an_ab_run_of_some_parts_with_an_option(tmp_path):
    proc, data = _bench(tmp_path, "--only", "latency", "--set", "profile=quiet",
                        "--airflow-option", "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY=64")
    assert set(data["figures"]) == {"first start (initdb, migration included) to healthy", "stop",
                                    "processes left after stop"} | {
        f"{w} trigger to success {q}" for w in ("one-task", "two-task chain") for q in ("first run", "p50", "p95")}
    assert data["machine"]["overrides"] == {"APACHE_AIRFLOW_PROFILE": "quiet",
                                            "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": "64"}
    assert "one-task trigger to success p50" in proc.stdout


@pytest.mark.long  # two stacks one after the other: `./cli.sh test long`
def test_quick_benchmark_with_the_standalone_baseline(tmp_path):
    proc, data = _bench(tmp_path, "--baseline")
    assert [k for k in EXPECTED if k not in data["figures"]] == []
    # The baseline ran against `airflow standalone`: every figure that applies is there; its fan-out
    # may end as "not finished: k task(s) done ..." (SQLite locks), which is a figure too.
    baseline = data["baseline"]
    assert [k for k in BASELINE if k not in baseline] == [], baseline.get("baseline error")
    assert baseline["processes left after stop"]["value"] == 0
    assert "standalone/resource" in proc.stdout
