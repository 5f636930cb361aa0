#!/usr/bin/env python3
"""Time `logs search` over 10,000 task log files written in Airflow 3's layout and line format.

Generates the files in a temporary home's logs/tasks (dag_id=…/run_id=…/task_id=…/attempt=N.log, JSON lines
as the task SDK writes them: the lines of a task that ran, and of one that failed with a traceback), then
runs the search the CLI runs (airflow_resource.logs.tasklogs) with and without filters and without the raw-text
prefilter (a pattern with an alternation has no required literal), first pass and warm (median of 3), and
`logs search` end to end as a process (the CLI's start-up included).

    benchmarks/logs_search.py [--files 10000] [--keep DIR] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from airflow_resource.logs import tasklogs  # noqa: E402

DAGS = 20
TASKS = 10
NEEDLE = "ZeroDivisionError: division by zero"


def _line(ts: datetime, level: str, event: str, logger: str, **extra) -> str:
    rec = {"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "level": level, "event": event, "logger": logger, **extra}
    return json.dumps(rec, separators=(",", ":"))


def log_lines(dag: str, run: str, task: str, failed: bool, start: datetime) -> list[str]:
    """About the lines a real try writes (task SDK start-up, the task's own output, the end)."""
    t = start
    out = []

    def add(level: str, event: str, logger: str = "task", **extra) -> None:
        nonlocal t
        t += timedelta(milliseconds=37)
        out.append(_line(t, level, event, logger, **extra))

    add("info", "DAG bundles loaded: dags-folder", "airflow.dag_processing.bundles.manager.DagBundlesManager")
    add("info", f"Filling up the DagBag from /var/lib/apache-airflow/dags/{dag}.py", "airflow.models.dagbag.DagBag")
    add("info", "Task instance is in running state", "task.stdout")
    add("info", " Previous state of the Task instance: TaskInstanceState.QUEUED", "task.stdout")
    add("info", f"Current task name:{task}", "task.stdout")
    for i in range(12):
        add("info", f"processed batch {i} of {dag}.{task}: {i * 1000} rows in {0.1 * i:.2f} s", "task.stdout")
    add("info", "Tmp dir root location: /tmp", "airflow.task.hooks.airflow.providers.standard.hooks.subprocess.SubprocessHook")
    add("info", f"Running command: ['/usr/bin/bash', '-c', 'echo {task}']", "airflow.task.hooks")
    add("info", "Output:", "airflow.task.hooks")
    if failed:
        add("error", "Task failed with exception", "task", error_detail=[{
            "exc_type": "ZeroDivisionError", "exc_value": "division by zero", "exc_notes": [], "syntax_error": None,
            "is_cause": False, "is_group": False, "exceptions": [],
            "frames": [{"filename": "/opt/venv/lib/python3.11/site-packages/airflow/sdk/execution_time/task_runner.py",
                        "lineno": 1170, "name": "run"},
                       {"filename": f"/var/lib/apache-airflow/dags/{dag}.py", "lineno": 21, "name": "compute"}]}])
    else:
        add("info", "Done. Returned value was: None", "airflow.task.operators")
    add("info", "Pushing xcom", "task", ti="RuntimeTaskInstance")
    return out


def generate(root: Path, files: int) -> int:
    """files logs: DAGS dags x TASKS tasks x runs; one try in 50 failed. Returns the bytes written."""
    runs = max(1, files // (DAGS * TASKS))
    start = datetime(2026, 11, 20, tzinfo=timezone.utc)
    written = n = 0
    for r in range(runs):
        for d in range(DAGS):
            dag = f"pipeline_{d:02d}"
            run = f"scheduled__{(start + timedelta(hours=r)).isoformat()}"
            for t in range(TASKS):
                if n >= files:
                    return written
                task = f"step_{t}"
                failed = n % 50 == 7
                path = root / tasklogs.relative_path(dag, run, task, 1)
                path.parent.mkdir(parents=True, exist_ok=True)
                text = "\n".join(log_lines(dag, run, task, failed, start + timedelta(hours=r, seconds=t))) + "\n"
                path.write_text(text)
                written += len(text)
                n += 1
    return written


def timed(fn, repeat: int = 3) -> tuple[float, float, object]:
    """(first run s, median of the next `repeat` s, result)."""
    t = time.perf_counter()
    result = fn()
    first = time.perf_counter() - t
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return first, statistics.median(runs), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--keep", help="generate into DIR and keep it")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    home = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="logs-search-bench-"))
    root = home / "logs" / "tasks"
    root.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        size = generate(root, args.files)
        print(f"generated {args.files} task logs, {size / 1e6:.1f} MB, in {time.perf_counter() - t:.1f} s ({root})")
        rx = re.compile(re.escape(NEEDLE))
        cases = {
            "every log, literal pattern": lambda: tasklogs.search(tasklogs.find(root), rx),
            "every log, regex 'batch [0-9]+ of pipeline_07'": lambda: tasklogs.search(
                tasklogs.find(root), re.compile(r"batch [0-9]+ of pipeline_07")),
            "every log, no prefilter ('ZeroDivisionError|NoSuchError')": lambda: tasklogs.search(
                tasklogs.find(root), re.compile("ZeroDivisionError|NoSuchError")),
            "one DAG (--dag pipeline_03)": lambda: tasklogs.search(tasklogs.find(root, dag_id="pipeline_03"), rx),
            "--since with no log that new (tree walk and stat only)": lambda: tasklogs.search(
                tasklogs.find(root, modified_after=time.time() + 3600), rx),
        }
        figures = {}
        for name, fn in cases.items():
            first, warm, (matches, searched, _cut) = timed(fn)
            figures[name] = {"first_s": round(first, 3), "warm_median_s": round(warm, 3),
                             "files": searched, "matches": len(matches)}
            print(f"{name:<50} first {first:6.2f} s  warm {warm:6.2f} s  files {searched:>6}  matches {len(matches)}")
        cli = [sys.executable, "-m", "airflow_resource", "logs", "search", NEEDLE, "--home", str(home),
               "--format", "json", "--limit", "100000"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("APACHE_AIRFLOW_")}
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
        first, warm, proc = timed(lambda: subprocess.run(cli, capture_output=True, text=True, env=env))
        found = len(json.loads(proc.stdout)["matches"]) if proc.returncode == 0 else proc.stderr.strip()
        figures["logs search CLI process"] = {"first_s": round(first, 3), "warm_median_s": round(warm, 3),
                                              "matches": found}
        print(f"{'logs search as a CLI process (start-up included)':<50} first {first:6.2f} s  warm {warm:6.2f} s"
              f"  matches {found}")
        if args.json_out:
            Path(args.json_out).write_text(json.dumps({"files": args.files, "bytes": size, "cases": figures}, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
