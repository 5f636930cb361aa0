"""`./cli.sh bench --baseline`: the same workloads against `airflow standalone` from the same venv.

Standalone is Airflow as its quick start runs it: SQLite, LocalExecutor, its own defaults, one
process tree. It runs as the service user in a temporary AIRFLOW_HOME on free ports; the bench DAGs
are in its dags folder before it starts (its folder is listed only every 5 minutes by default).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import requests

from airflow_resource import printer
from airflow_resource.stack import system
from airflow_resource.api import AirflowAPI
from airflow_resource.bench.measure import Bench
from airflow_resource.bench.workloads import Sizes

START_TIMEOUT_S = 300
STOP_TIMEOUT_S = 30
USER = "bench"


class StandaloneBench(Bench):
    """The bench's workloads against one `airflow standalone` process tree."""

    run_timeout_s = 300.0  # its 200-task fan-out may never finish (SQLite locks): report how far it got

    def __init__(self, venv: Path, service_user: str, ports: list[int], sizes: Sizes):
        self.venv = venv
        self.who = system.run_as(service_user)
        home = Path(tempfile.mkdtemp(prefix="af-bench-standalone-", dir="/tmp"))
        home.chmod(0o755)
        (home / "dags").mkdir()
        self.port, worker_logs, trigger_logs = ports
        super().__init__(home, {}, sizes)
        self.env = {
            "PATH": os.pathsep.join([str(venv / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_logs),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_logs),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        for path in (self.home, self.home / "dags"):
            os.chown(path, self.who.uid, self.who.gid)

    def write_dag(self, name: str, text: str) -> None:
        path = self.dags_dir() / name
        path.write_text(text)
        os.chown(path, self.who.uid, self.who.gid)

    def start(self, label: str, goal: str = "") -> None:
        self.result.add(label, round(self._launch(), 1), "s", goal)

    def _launch(self) -> float:
        """Launch; seconds until the API answers and reports every component healthy."""
        started = time.monotonic()
        log = (self.home / "standalone.log").open("wb")
        self.proc = subprocess.Popen(
            [str(self.venv / "bin" / "airflow"), "standalone"], env=self.env, cwd=self.home,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            **self.who.popen_kwargs())
        url = f"http://127.0.0.1:{self.port}/api/v2/monitor/health"
        session = requests.Session()
        session.trust_env = False
        while time.monotonic() - started < START_TIMEOUT_S:
            if self.proc.poll() is not None:
                raise RuntimeError(f"airflow standalone exited with {self.proc.returncode}: see "
                                   f"{self.home / 'standalone.log'}")
            try:
                health = session.get(url, timeout=2).json()
                if all(c.get("status") == "healthy" for c in health.values() if isinstance(c, dict)):
                    return time.monotonic() - started
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"airflow standalone not healthy after {START_TIMEOUT_S} s")

    @property
    def api(self) -> AirflowAPI:
        if self._api is None:
            self._api = AirflowAPI(f"http://127.0.0.1:{self.port}", USER, self._password())
        return self._api

    def _password(self) -> str:
        path = self.home / "simple_auth_manager_passwords.json.generated"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                return json.loads(path.read_text())[USER]
            except (OSError, ValueError, KeyError):
                time.sleep(0.5)
        raise RuntimeError(f"airflow standalone wrote no password for {USER} in {path}")

    def processes(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def groups(self) -> dict[str, list[psutil.Process]]:
        return {"standalone": self.processes()}

    def stop(self) -> None:
        took, left = self._terminate()
        self.result.add("stop", round(took, 1), "s")
        self.result.add("processes left after stop", left, "")

    def _terminate(self) -> tuple[float, int]:
        """SIGTERM to the tree; seconds until it is gone, and how many were left (then killed)."""
        started = time.monotonic()
        procs = self.processes()
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=STOP_TIMEOUT_S)
        took = time.monotonic() - started
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        return took, len(alive)

    def cleanup(self, keep: bool) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._terminate()
        if keep:
            printer.info("standalone home kept: {}", self.home)
        else:
            shutil.rmtree(self.home, ignore_errors=True)
