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
    "health endpoint p99", "status p99", "list runs (50 runs) p99",
]


def test_quick_benchmark_runs_and_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "airflow_resource", "bench", "--quick", "--output", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    figures = data["figures"]
    missing = [k for k in EXPECTED if k not in figures]
    assert missing == []
    for key, fig in figures.items():
        assert isinstance(fig["value"], numbers.Number) and fig["value"] >= 0, key
    assert figures["processes left after stop"]["value"] == 0
    assert data["machine"]["quick"] is True and data["machine"]["cores"] >= 1
    assert "one-task trigger to success p50" in proc.stdout  # the table is printed
