"""Shared test fixtures: a real stack in a temporary home on free ports, driven by the CLI and REST API.

One stack is shared by the session (`running_stack`): started on first use, stopped and removed at the
end. A module may stop it or even uninstall it (test_stack.py's last tests do): before each module
whose tests use it, the fixture checks it still runs and otherwise starts it again, in the same home, on
the same ports, with the same environment (a removed home is installed again). So no module depends on
which modules ran before it: the suite passes in file order and in reversed module order.

RESOURCE_TEST_REVERSE=1 runs the collected modules in reversed order (each module's own tests keep
theirs), to prove that: `RESOURCE_TEST_REVERSE=1 ./cli.sh test integration`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import requests

from airflow_resource.config import settings
from airflow_resource.config.venv import runtime_venv
from airflow_resource.stack.system import free_port, free_port_block  # noqa: F401 (modules import them from here)
from tests.browser import browser, playwright_driver  # noqa: F401 (the session's one browser, for every module)

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 240
MARKER_ENV = "APACHE_AIRFLOW_RESOURCE_HOME"
REVERSE_ENV = "RESOURCE_TEST_REVERSE"
SHARED_STACK = "running_stack"


def make_home(prefix: str = "af-test-") -> Path:
    """A home the service user can reach (pytest's tmp_path is under a 0700 directory)."""
    home = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    home.chmod(0o755)
    return home


def stack_env(home: Path, workers: int = 1) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APACHE_AIRFLOW_")}
    env.update({
        "APACHE_AIRFLOW_HOME": str(home),
        # reuse the installed (runtime) venv: no second Airflow install; the tests run from the test venv
        "APACHE_AIRFLOW_VENV": str(runtime_venv()),
        "APACHE_AIRFLOW_WORKERS": str(workers),
        "APACHE_AIRFLOW_LOG_SERVER_PORT": str(free_port_block(workers + 1)),
    })
    for setting in settings.PORT_SETTINGS:
        if setting.name != "log_server_port":  # a block, above
            env[setting.env] = str(free_port())
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "airflow_resource", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def processes_of(home: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get(MARKER_ENV) == str(home):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


@dataclass
class RunningStack:
    home: Path
    env: dict[str, str]
    _token: str | None = field(default=None, repr=False)

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return cli(self.env, *args, timeout=timeout)

    def status(self) -> dict:
        proc = self.cli("status", "--format", "json", timeout=30)
        return json.loads(proc.stdout)

    def credentials(self) -> dict:
        proc = self.cli("credentials", "--format", "json", "--show-secrets", timeout=30)
        assert proc.returncode == 0, proc.stderr
        return {c["id"]: c for c in json.loads(proc.stdout)["connections"]}

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.env['APACHE_AIRFLOW_API_PORT']}"

    def token(self) -> str:
        admin = self.credentials()["api"]["auth"]
        r = requests.post(f"{self.api}/auth/token", json=admin, timeout=30)
        r.raise_for_status()
        return r.json()["access_token"]

    def rest(self, method: str, path: str, **kw) -> requests.Response:
        """A REST call with the admin's token, fetched once (each fetch checks the password: ~0.3 s
        of the api-server's CPU) and again when refused (a restored home has other secrets)."""
        extra = kw.pop("headers", {})
        for attempt in range(2):
            if self._token is None or attempt:
                self._token = self.token()
            headers = {"Authorization": f"Bearer {self._token}", **extra}
            r = requests.request(method, f"{self.api}/api/v2{path}", headers=headers, timeout=30, **kw)
            if r.status_code != 401:
                break
        return r

    def wait_for(self, predicate, timeout: float, what: str, poll: float = 1.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
            except requests.Timeout as exc:  # a loaded api-server: poll again until the deadline
                last = exc
            if last and not isinstance(last, Exception):
                return last
            time.sleep(poll)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def start_stack(prefix: str, workers: int = 1, extra_env: dict[str, str] | None = None) -> RunningStack:
    home = make_home(prefix)
    env = {**stack_env(home, workers), **(extra_env or {})}
    stack = RunningStack(home, env)
    _start(stack)
    return stack


def _start(stack: RunningStack) -> None:
    proc = stack.cli("manage", "start", "--timeout", str(START_TIMEOUT_S), timeout=START_TIMEOUT_S * 3)
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted((stack.home / "logs" / "components").glob("*.log")))
        stop_and_remove(stack)
        pytest.fail(f"manage start failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{logs}")


def ensure_running(stack: RunningStack) -> bool:
    """Start the stack again when an earlier module stopped it (exit 2 from status) or uninstalled it
    (no home): same home, ports and environment. A stack that runs, healthy or not, is left as it is.
    True when it had to be started."""
    if stack.home.exists() and stack.cli("status", "--format", "json", timeout=60).returncode != 2:
        return False
    if not stack.home.exists():
        stack.home.mkdir(parents=True)
        stack.home.chmod(0o755)  # as make_home: the service user must reach it
    _start(stack)
    stack._token = None  # a home installed again has new secrets
    return True


def stop_and_remove(stack: RunningStack) -> None:
    cli(stack.env, "manage", "stop", "--force", timeout=120)
    for p in processes_of(stack.home):
        p.kill()
    shutil.rmtree(stack.home, ignore_errors=True)


class WebhookReceiver:
    """A real HTTP endpoint for failure alerts: answers the first POST with 500 (to prove the retry),
    every later one with 200, and records each (arrival time, status answered, JSON body)."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.posts: list[tuple[float, int, dict]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    status = 500 if not receiver.posts else 200
                    try:
                        data = json.loads(body)
                    except ValueError:
                        data = {"unparsable": body.decode(errors="replace")}
                    receiver.posts.append((time.time(), status, data))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/airflow?token=test-secret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self, event: str, **fields) -> list[tuple[float, dict]]:
        """Bodies of `event` answered 200 whose fields equal the given ones."""
        with self._lock:
            return [(t, d) for t, status, d in self.posts if status == 200 and d.get("event") == event
                    and all(d.get(k) == v for k, v in fields.items())]

    def close(self) -> None:
        self.server.shutdown()


def pytest_terminal_summary(terminalreporter):
    """The fault suite's table (tests/integration/test_faults.py), when it ran."""
    faults = sys.modules.get("tests.integration.test_faults")
    lines = faults.table() if faults else []
    if lines:
        terminalreporter.section("faults")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def webhook_receiver():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def running_stack(webhook_receiver):
    """One real stack shared by the integration and browser modules; each module finds it running
    (_shared_stack_runs), whatever an earlier module did to it. Its failure alerts go to the session's
    webhook receiver."""
    stack = start_stack("af-it-", extra_env={"APACHE_AIRFLOW_ALERT_WEBHOOK_URL": webhook_receiver.url})
    yield stack
    stop_and_remove(stack)


@pytest.fixture(scope="module", autouse=True)
def _shared_stack_runs(request):
    """Before a module that uses the shared stack: start it again if an earlier module stopped or removed
    it (test_stack.py stops it, then uninstalls it). Modules that do not use it never start it."""
    if any(getattr(item, "module", None) is request.module and SHARED_STACK in item.fixturenames
           for item in request.session.items):
        if ensure_running(request.getfixturevalue(SHARED_STACK)):
            print(f"\n{request.module.__name__}: the shared stack was stopped by an earlier module: started again")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """RESOURCE_TEST_REVERSE=1: the modules in reversed order, each module's tests in their own order."""
    if os.environ.get(REVERSE_ENV, "") in ("", "0"):
        return
    modules: dict[str, list] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    items[:] = [item for name in reversed(list(modules)) for item in modules[name]]
