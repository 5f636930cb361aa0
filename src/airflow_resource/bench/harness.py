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
from airflow_resource.bench import rates, report
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


# The parts a run can be limited to (--only), in the order they run. The first start always runs.
PARTS = ("starts", "idle", "latency", "fanout", "big", "items", "memory", "scale", "files", "probes", "queries",
         "scheduling")


def parts(only: str | None) -> tuple[str, ...]:
    """--only's comma list, checked; every part when it is not given."""
    if not only:
        return PARTS
    wanted = tuple(p.strip() for p in only.split(",") if p.strip())
    unknown = [p for p in wanted if p not in PARTS]
    if unknown or not wanted:
        raise CommandError(f"--only {only!r}: {', '.join(unknown) or 'nothing'} is no part of the bench",
                           f"choose from {', '.join(PARTS)}")
    return wanted


def stack_overrides(sets: dict[str, str], options: list[str] | None) -> dict[str, str]:
    """Settings (--set, checked by the CLI) and --airflow-option AIRFLOW__SECTION__KEY=VALUE items, as the
    environment of the bench's stack: what an A/B run changes."""
    env = {settings.BY_NAME[name].env: value for name, value in sets.items()}
    for item in options or []:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("AIRFLOW__") or key.count("__") < 2:
            raise CommandError(f"--airflow-option {item!r} is not AIRFLOW__SECTION__KEY=VALUE",
                               "e.g. --airflow-option AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY=64")
        env[key] = value
    return env


def load() -> float:
    return round(os.getloadavg()[0], 2)


def run(quick: bool, output: Path | None, keep: bool = False, baseline: bool = False, only: str | None = None,
        overrides: dict[str, str] | None = None) -> dict[str, Any]:
    sizes = Sizes.quick() if quick else Sizes()
    want = parts(only)
    home = Path(tempfile.mkdtemp(prefix="af-bench-", dir="/tmp"))
    home.chmod(0o755)
    venv = os.environ.get("APACHE_AIRFLOW_VENV") or str(runtime_venv())
    env = {**_env(home, venv), **(overrides or {})}
    b = Bench(home, env, sizes)
    machine = {"cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
               "date": time.strftime("%Y-%m-%d"), "quick": quick, "load_at_start": load(),
               "parts": list(want), "overrides": overrides or {}}
    printer.step(f"benchmark in {home} ({'quick' if quick else 'full'} sizes), load average {machine['load_at_start']}")
    if machine["load_at_start"] >= 1:
        printer.warn(f"the machine is busy (load {machine['load_at_start']}): figures will be pessimistic")
    try:
        b.start(FIRST_START, "<= 25 s")
        if "starts" in want:
            b.stop()
            b.start("later start to healthy", "<= 15 s")
        if "idle" in want:
            b.memory("idle after start", by_component=True)
            b.idle_cpu(10 if quick else 30)
        b.write_dags()
        if "latency" in want:
            b.latency("bench_one", "one-task trigger to success", "<= 0.6 s")
            b.latency("bench_chain", "two-task chain trigger to success", "<= 1.0 s")
        if "fanout" in want:
            b.workload(sizes.fanout, f"{sizes.fanout}-task fan-out", "<= 25 s" if not quick else "")
        if "big" in want:
            b.workload(sizes.big, f"{sizes.big}-task workload", ">= 500 tasks/min" if not quick else "")
        if "items" in want:
            rates.items(b)
        if "memory" in want:
            b.memory("after the workloads", "<= 1.5 GiB", by_component=True)
        if "scale" in want:
            b.scale_up()
        if "files" in want:
            b.many_files()
        if "probes" in want:
            b.probes()
        if "queries" in want:
            b.metadata_queries()
        if "scheduling" in want:
            rates.scheduling_rate(b, sizes.big)
        b.stop()
    finally:
        _force_stop(env)
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    machine["load_at_end"] = load()
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
