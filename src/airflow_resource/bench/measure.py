"""Bench: the measurements against one stack that runs in a temporary home (start, latency,
throughput, CPU and memory by component, scale-up, DAG parsing, probes, metadata queries).

Each measurement adds figures to a Result; harness.run() decides which run and in what order.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import psutil

from airflow_resource import printer
from airflow_resource.api import AirflowAPI
from airflow_resource.config import settings
from airflow_resource.bench.workloads import BENCH_DAGS, TEN_TASKS, Sizes
from airflow_resource.errors import CommandError

POLL_S = 0.2
# A big run is polled less often: the REST API's run view loads every task instance of the run to
# list its DAG versions, so polling a 1,000-task run every 0.2 s would load the api-server it measures.
# Its wall time comes from the run's end_date, not from the poll.
WORKLOAD_POLL_S = 1.0
RUN_TIMEOUT_S = 1800
SCALE_TIMEOUT_S = 300


class RunTimeout(CommandError):
    """A run not final within run_timeout_s: a workload reports how far it got; elsewhere it ends the bench."""


@dataclass
class Result:
    figures: dict[str, Any] = field(default_factory=dict)

    def add(self, key: str, value: Any, unit: str, goal: str = "") -> None:
        self.figures[key] = {"value": value, "unit": unit, "goal": goal}
        printer.ok(f"{key}: {value} {unit}" + (f"  (goal {goal})" if goal else ""))


def run_cli(env: dict[str, str], *args: str, timeout: float = 900) -> tuple[float, subprocess.CompletedProcess[str]]:
    """The resource's CLI on the bench's home (env); seconds it took, and its outcome."""
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "airflow_resource", *args], env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CommandError(f"`resource-apache-airflow {' '.join(args)}` did not finish within {timeout:.0f} s",
                           _keep_hint(Path(env["APACHE_AIRFLOW_HOME"]))) from None
    return time.monotonic() - started, proc


def _keep_hint(home: Path) -> str:
    return f"the logs are under {home / 'logs'}; `./cli.sh bench --keep` keeps that home after the bench (removed otherwise)"


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("r", errors="replace") as f:
            f.seek(offset)
            return f.read()
    except OSError:
        return ""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))], 3)


def _cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            continue
    return total


def _cpu_by_component(groups: dict[str, list[psutil.Process]], work: Callable[[], Any]) -> tuple[dict[str, float], Any]:
    """CPU-seconds each group of processes spent while work() ran, and work()'s result."""
    before = {name: _cpu_seconds(procs) for name, procs in groups.items()}
    out = work()
    return {name: _cpu_seconds(procs) - before[name] for name, procs in groups.items()}, out


def _shares(spent: dict[str, float], per: float, fmt: str = "{:.3f}") -> str:
    """'worker-1 0.138, api-server 0.122, ...': each component's CPU divided by per, largest first."""
    top = sorted(spent.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{name} {fmt.format(s / per)}" for name, s in top if s / per >= 0.001)


def _pss_mib(procs: list[psutil.Process]) -> tuple[int, float]:
    total = 0
    for p in procs:
        try:
            total += p.memory_full_info().pss
        except psutil.Error:
            continue
    return len(procs), round(total / 2**20, 1)

class Bench:
    def __init__(self, home: Path, env: dict[str, str], sizes: Sizes):
        self.home, self.env, self.sizes = home, env, sizes
        self.result = Result()
        self._api: AirflowAPI | None = None

    def processes(self) -> list[psutil.Process]:
        from airflow_resource.stack import handle

        return handle.stack_processes(settings.resolve({"home": str(self.home)}, environ=self.env))

    def groups(self) -> dict[str, list[psutil.Process]]:
        """The processes by component, for CPU by component."""
        from airflow_resource.stack import handle

        return handle.component_processes(settings.resolve({"home": str(self.home)}, environ=self.env))

    @property
    def hint(self) -> str:
        """For an error that ends the bench: where to look."""
        return _keep_hint(self.home)

    def dags_dir(self) -> Path:
        return self.home / "dags"

    def write_dag(self, name: str, text: str) -> None:
        (self.dags_dir() / name).write_text(text)

    @property
    def api(self) -> AirflowAPI:
        if self._api is None:
            self._api = AirflowAPI.for_stack(settings.resolve({"home": str(self.home)}, environ=self.env))
        return self._api

    def start(self, label: str, goal: str) -> None:
        took, proc = run_cli(self.env, "manage", "start", "--timeout", "300")
        if proc.returncode != 0:
            raise CommandError(f"manage start failed:\n{proc.stderr[-3000:]}", self.hint)
        self.result.add(label, round(took, 1), "s", goal)
        self.reconnect()

    def reconnect(self) -> None:
        """After a start: a new API client (new credentials, maybe another api-server)."""
        self._api = None

    def stop(self, record: bool = True) -> None:
        took, proc = run_cli(self.env, "manage", "stop")
        if proc.returncode != 0:
            raise CommandError(f"manage stop failed:\n{proc.stderr[-3000:]}", self.hint)
        if record and "stop" not in self.result.figures:  # the first stop: a later one has other work to do
            left = self.processes()
            self.result.add("stop", round(took, 1), "s", "<= 10 s, no process left")
            self.result.add("processes left after stop", len(left), "", "0")

    def write_dags(self) -> None:
        for name, text in BENCH_DAGS.items():
            self.write_dag(name, text)
        self.wait_registered(["bench_one", "bench_chain", "bench_fanout"], 120)
        for d in ("bench_one", "bench_chain", "bench_fanout"):
            self.api.patch(f"/dags/{d}", {"is_paused": False})

    def wait_registered(self, dag_ids: list[str], timeout: float) -> float:
        started = time.monotonic()
        pending = set(dag_ids)
        prefix = os.path.commonprefix(dag_ids)
        while pending:
            known = {d["dag_id"] for d in self.api.paged("/dags", "dags", {"dag_id_pattern": prefix})}
            pending -= known
            if time.monotonic() - started > timeout:
                raise CommandError(f"not registered after {timeout} s: {sorted(pending)[:5]}", self.hint)
            if pending:
                time.sleep(POLL_S)
        return time.monotonic() - started

    run_timeout_s: float = RUN_TIMEOUT_S

    def run(self, dag_id: str, conf: dict[str, Any] | None = None, poll: float = POLL_S) -> float:
        """Trigger through the REST API, poll until final; seconds from trigger to the run's end."""
        started, wall = time.monotonic(), time.time()
        view = self.wait_run(self.trigger(dag_id, conf), started, poll)
        if poll == POLL_S:
            return time.monotonic() - started  # as a user polling every 0.2 s sees it
        return datetime.fromisoformat(view["end_date"].replace("Z", "+00:00")).timestamp() - wall

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        run = self.api.post(f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}"

    def wait_run(self, path: str, started: float, poll: float = POLL_S) -> dict[str, Any]:
        while True:
            view = self.api.get(path)
            if view["state"] in ("success", "failed"):
                break
            if time.monotonic() - started > self.run_timeout_s:
                done = self.api.get(f"{path}/taskInstances", params={"state": "success", "limit": 1})
                raise RunTimeout(f"{done['total_entries']} task(s) done, run still {view['state']} after "
                                 f"{self.run_timeout_s:.0f} s", self.hint)
            time.sleep(poll)
        if view["state"] != "success":
            raise CommandError(f"run {path} failed", self.hint)
        return view

    def latency(self, dag_id: str, label: str, goal: str) -> None:
        first = self.run(dag_id)  # the first run after start: first parse, first fork, cold caches
        times = [self.run(dag_id) for _ in range(self.sizes.latency_runs)]
        self.result.add(f"{label} first run", round(first, 3), "s")
        self.result.add(f"{label} p50", _pct(times, 0.5), "s", goal)
        self.result.add(f"{label} p95", _pct(times, 0.95), "s")

    def workload(self, n: int, label: str, goal: str) -> None:
        try:
            spent, took = _cpu_by_component(self.groups(), lambda: self.run("bench_fanout", {"n": n}, WORKLOAD_POLL_S))
        except RunTimeout as exc:
            self.result.add(f"{label} wall", f"not finished: {exc}", "", goal)
            return
        cpu = sum(spent.values())
        self.result.add(f"{label} wall", round(took, 1), "s", goal)
        self.result.add(f"{label} tasks per minute", round(n / took * 60), "tasks/min")
        self.result.add(f"{label} CPU-seconds per task", round(cpu / n, 3), "CPU-s", "<= 0.12")
        self.result.add(f"{label} CPU-seconds per task by component", _shares(spent, n), "CPU-s")

    def scale_up(self) -> None:
        """One more worker while a fan-out keeps the queue full: seconds from `./cli.sh manage scale` to the new
        worker running a task (its log says 'Executing workload' when Celery hands it one)."""

        s = settings.resolve({"home": str(self.home)}, environ=self.env)
        name = f"worker-{s.workers + 1}"
        log = self.home / "logs" / "components" / f"{name}.log"
        seen = log.stat().st_size if log.exists() else 0  # a log of an earlier worker of that name
        path = self.trigger("bench_fanout", {"n": 8 * s.worker_concurrency * (s.workers + 1)})
        self._wait_running(path)
        started = time.monotonic()
        _, proc = run_cli(self.env, "manage", "scale", "--workers", str(s.workers + 1), "--timeout", "300")
        if proc.returncode != 0:
            raise CommandError(f"manage scale failed:\n{proc.stderr[-3000:]}", self.hint)
        ready = time.monotonic() - started
        while "Executing workload" not in _read_from(log, seen):
            if time.monotonic() - started > SCALE_TIMEOUT_S:
                raise CommandError(f"{name} ran no task within {SCALE_TIMEOUT_S} s of `./cli.sh manage scale`", self.hint)
            time.sleep(POLL_S)
        took = time.monotonic() - started
        self.wait_run(path, time.monotonic(), WORKLOAD_POLL_S)
        self.result.add("scale-up: one more worker ready", round(ready, 1), "s")
        self.result.add("scale-up: one more worker running a task", round(took, 1), "s", "<= 10 s")

    def _wait_running(self, path: str) -> None:
        """Until the run's mapped tasks run (the queue is then full), so the new worker finds work."""
        deadline = time.monotonic() + SCALE_TIMEOUT_S
        while not self.api.get(f"{path}/taskInstances", params={"state": "running", "task_id": "work",
                                                                 "limit": 1})["total_entries"]:
            if time.monotonic() > deadline:
                raise CommandError(f"no task of {path} running after {SCALE_TIMEOUT_S} s", self.hint)
            time.sleep(POLL_S)

    def many_files(self) -> None:
        dags = self.home / "dags" / "bench_files"
        staging = self.home / "run" / "bench_files"
        staging.mkdir(parents=True, exist_ok=True)
        for i in range(self.sizes.files):
            (staging / f"bench_file_{i:03d}.py").write_text(TEN_TASKS.format(i=i))
        started = time.monotonic()
        os.replace(staging, dags)
        self.wait_registered([f"bench_file_{i:03d}" for i in range(self.sizes.files)], 600)
        self.result.add(f"{self.sizes.files} DAG files registered", round(time.monotonic() - started, 1), "s", "<= 10 s")

    def probes(self) -> None:
        import requests

        url = f"http://127.0.0.1:{self.env['APACHE_AIRFLOW_API_PORT']}/api/v2/monitor/health"
        session = requests.Session()
        session.trust_env = False
        times = []
        for _ in range(self.sizes.probes):
            t = time.monotonic()
            try:
                session.get(url, timeout=10).raise_for_status()
            except requests.RequestException as exc:
                raise CommandError(f"the health endpoint {url} failed: {exc}", self.hint) from None
            times.append((time.monotonic() - t) * 1000)
        self.result.add("health endpoint p50", _pct(times, 0.5), "ms")
        self.result.add("health endpoint p99", _pct(times, 0.99), "ms", "<= 100 ms")
        status = [(run_cli(self.env, "status", "--format", "json")[0]) * 1000 for _ in range(max(3, self.sizes.probes // 10))]
        self.result.add("status p50", round(_pct(status, 0.5)), "ms")
        self.result.add("status p99", round(_pct(status, 0.99)), "ms")

    def metadata_queries(self) -> None:
        have = self.api.get("/dags/bench_one/dagRuns", params={"limit": 1})["total_entries"]
        want = self.sizes.runs_in_db
        self.api.patch("/dags/bench_one", {"is_paused": True})  # runs are created, not executed

        def create(_: int) -> None:
            self.api.post("/dags/bench_one/dagRuns", {"logical_date": None})

        if want > have:
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(create, range(want - have)))
        queries: dict[str, Callable[[], Any]] = {
            "list DAGs": lambda: self.api.get("/dags", params={"limit": 100}),
            "list runs": lambda: self.api.get("/dags/bench_one/dagRuns", params={"limit": 100, "order_by": "-run_after"}),
            "list task instances": lambda: self.api.get("/dags/~/dagRuns/~/taskInstances", params={"limit": 100}),
        }
        for name, q in queries.items():
            times = []
            for _ in range(max(5, self.sizes.probes // 5)):
                t = time.monotonic()
                q()
                times.append((time.monotonic() - t) * 1000)
            self.result.add(f"{name} ({want} runs) p50", _pct(times, 0.5), "ms")
            self.result.add(f"{name} ({want} runs) p99", _pct(times, 0.99), "ms", "<= 100 ms")

    def memory(self, label: str, goal: str = "", by_component: bool = False) -> None:
        n, mib = _pss_mib(self.processes())
        self.result.add(f"memory {label}", mib, f"MiB PSS ({n} processes)", goal)
        if by_component:
            parts = {name: _pss_mib(procs) for name, procs in self.groups().items()}
            top = sorted(parts.items(), key=lambda kv: -kv[1][1])
            self.result.add(f"memory {label} by component", ", ".join(
                f"{name} {mib_:.0f} ({count})" for name, (count, mib_) in top if mib_ >= 1), "MiB PSS (processes)")

    def idle_cpu(self, seconds: float) -> None:
        spent, _ = _cpu_by_component(self.groups(), lambda: time.sleep(seconds))
        pct = sum(spent.values()) / seconds * 100
        self.result.add("idle CPU", round(pct, 1), "% of one core", "<= 5 %")
        self.result.add("idle CPU by component", _shares(spent, seconds / 100, "{:.1f}"), "% of one core")
