"""`./cli.sh bench`: start the resource in a temporary home on free ports and measure it; with --baseline,
then the same workloads against `airflow standalone`.

Prints a table and writes JSON. Figures, not assertions: tests only check that the harness
runs (`./cli.sh bench --quick`). Workload DAGs are generated into the temporary home's dags folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from airflow_resource import printer
from airflow_resource.bench import report
from airflow_resource.bench.baseline import StandaloneBench
from airflow_resource.bench.measure import Bench, run_cli
from airflow_resource.bench.workloads import BENCH_DAGS, Sizes
from airflow_resource.config import settings
from airflow_resource.config.venv import runtime_venv
from airflow_resource.errors import CommandError
from airflow_resource.stack import system

FIRST_START = "first start (initdb, migration included) to healthy"


def _env(home: Path, venv: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APACHE_AIRFLOW_")}
    env.update({"APACHE_AIRFLOW_HOME": str(home), "APACHE_AIRFLOW_VENV": venv})
    for setting in settings.PORT_SETTINGS:  # log_server_port: the first of a block (triggerer, worker)
        env[setting.env] = str(system.free_port_block(2) if setting.name == "log_server_port" else system.free_port())
    return env


def run(quick: bool, output: Path | None, keep: bool = False, baseline: bool = False) -> dict[str, Any]:
    sizes = Sizes.quick() if quick else Sizes()
    home = Path(tempfile.mkdtemp(prefix="af-bench-", dir="/tmp"))
    home.chmod(0o755)
    venv = os.environ.get("APACHE_AIRFLOW_VENV") or str(runtime_venv())
    env = _env(home, venv)
    b = Bench(home, env, sizes)
    machine = {"cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
               "date": time.strftime("%Y-%m-%d"), "quick": quick}
    printer.step(f"benchmark in {home} ({'quick' if quick else 'full'} sizes)")
    try:
        b.start(FIRST_START, "<= 20 s")
        b.stop()
        b.start("later start to healthy", "<= 10 s")
        b.memory("idle after start")
        b.idle_cpu(10 if quick else 30)
        b.write_dags()
        b.latency("bench_one", "one-task trigger to success", "<= 0.5 s")
        b.latency("bench_chain", "two-task chain trigger to success", "<= 0.7 s")
        b.workload(sizes.fanout, f"{sizes.fanout}-task fan-out", "<= 12 s" if not quick else "")
        b.workload(sizes.big, f"{sizes.big}-task workload", "")
        b.memory("after the workloads", "<= 1.5 GiB")
        b.scale_up()
        b.many_files()
        b.probes()
        b.metadata_queries()
        b.stop()
    finally:
        _force_stop(env)
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    data: dict[str, Any] = {"machine": machine, "figures": b.result.figures}
    if baseline:
        data["baseline"] = _baseline(Path(venv), sizes, keep, quick)
    report.show(data, output)
    return data


def _force_stop(env: dict[str, str]) -> None:
    """Whatever stopped the bench, no process of its stack is left; a stop that fails too is reported
    without hiding why the bench stopped."""
    try:
        run_cli(env, "manage", "stop", "--force", timeout=120)
    except CommandError as exc:
        printer.warn(f"{exc.message}; its processes may still run")


def _baseline(venv: Path, sizes: Sizes, keep: bool, quick: bool) -> dict[str, Any]:
    """The workloads that apply to `airflow standalone`, from the same venv, after the resource's stack
    has stopped (never both at once on the machine)."""
    printer.step("baseline: the same workloads against `airflow standalone` (SQLite, LocalExecutor)")
    sb = StandaloneBench(venv, settings.resolve({}).service_user, [system.free_port() for _ in range(3)], sizes)
    if quick:
        sb.run_timeout_s = 60
    try:
        for name, text in BENCH_DAGS.items():  # before start: standalone lists its folder every 5 min
            sb.write_dag(name, text)
        sb.start(FIRST_START)
        sb.memory("idle after start")
        sb.idle_cpu(10 if quick else 30)
        sb.write_dags()
        sb.latency("bench_one", "one-task trigger to success", "")
        sb.latency("bench_chain", "two-task chain trigger to success", "")
        sb.workload(sizes.fanout, f"{sizes.fanout}-task fan-out", "")
        sb.memory("after the workloads")
        sb.stop()
    except Exception as exc:  # the baseline failing must not lose the resource's figures
        printer.warn(f"baseline stopped early: {exc}")
        sb.result.add("baseline error", str(exc)[:300], "")
    finally:
        sb.cleanup(keep)
    return sb.result.figures
