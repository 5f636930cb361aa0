"""The running stack: start in dependency order with readiness deadlines, stop leaving nothing, status."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import threading
import time
import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from airflow_resource.config import airflow_config
from airflow_resource.stack import components
from airflow_resource.stack import datastores
from airflow_resource.in_airflow import diskspace
from airflow_resource.stack import disk as stack_disk  # `disk` is status's local name for its report
from airflow_resource.stack import installer
from airflow_resource.stack import memlimit
from airflow_resource import printer
from airflow_resource.config import secrets as secrets_mod
from airflow_resource import standalone
from airflow_resource.standalone import launch
from airflow_resource.stack import probes
from airflow_resource.stack import supervisor
from airflow_resource.stack import system
from airflow_resource.stack.components import Component
from airflow_resource.errors import AlreadySo, CommandError
from airflow_resource.stack.probes import ProbeContext
from airflow_resource.config.secrets import Secrets
from airflow_resource.config import settings as settings_mod
from airflow_resource.config.settings import EFFECTIVE_FILE, Settings

MARKER_ENV = launch.HOME_ENV  # every process of a stack carries it: how stop finds leftovers
SUPERVISORD_UP_TIMEOUT_S = 15
MIGRATE_TIMEOUT_S = 600
ADMIN_TIMEOUT_S = 180
REQUEUE_TIMEOUT_S = 120
POLL_S = 0.25
KILL_WAIT_S = 5
LOG_TAIL_BYTES = 64 * 1024


@dataclass
class Stack:
    """Everything derived from settings that the lifecycle needs."""

    s: Settings
    sec: Secrets
    who: system.RunAs
    comps: list[Component]
    migrate_s: float | None = None  # how long this start's `airflow db migrate` took (None: not needed)

    @classmethod
    def load(cls, s: Settings) -> "Stack":
        sec = secrets_mod.require_installed(s)
        pg = system.pg_bindir() if s.embedded_postgres else None
        redis = system.redis_server() if s.embedded_redis else None
        comps = components.build(s, sec, str(pg or ""), str(redis or ""))
        return cls(s, sec, system.run_as(s.service_user), comps)

    def base_env(self) -> dict[str, str]:
        return {
            "PATH": airflow_config.child_path(self.s),
            "HOME": str(self.s.airflow_home),
            "USER": self.who.name,
            "LOGNAME": self.who.name,
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            MARKER_ENV: str(self.s.home),
        }

    def airflow_env(self) -> dict[str, str]:
        return airflow_config.airflow_env(self.s, self.sec)

    def env(self) -> dict[str, str]:
        """The whole environment of an Airflow process of this stack (one-off commands, validation)."""
        return {**self.base_env(), **self.airflow_env()}

    def probe_context(self) -> ProbeContext:
        return ProbeContext(self.s.api_url, airflow_config.redis_url(self.s, self.sec), self.s.workers)

    def rpc(self, timeout: float = supervisor.RPC_TIMEOUT_S) -> Any:
        return supervisor.client(self.s.supervisord_socket, timeout).supervisor

    def run_airflow(self, args: list[str], timeout: float, extra_env: dict[str, str] | None = None,
                    stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """A one-off Airflow command as the service user, with the stack's environment."""
        env = {**self.env(), **(extra_env or {})}
        return subprocess.run(
            args, env=env, cwd=self.s.airflow_home, input=stdin, capture_output=True, text=True, timeout=timeout,
            **self.who.popen_kwargs(),
        )


# ---------------------------------------------------------------- start

def is_running(s: Settings) -> bool:
    return supervisor.is_up(s.supervisord_socket)


def check_ports(comps: list[Component]) -> None:
    for c in comps:
        if c.port and system.port_in_use(c.port):
            raise CommandError(
                f"port {c.port} for {c.name} is in use by {system.who_listens(c.port)}",
                f"stop that process, or choose another port: {settings_mod.BY_NAME[c.port_setting].env}=<port>",
            )


def write_configs(st: Stack) -> None:
    s = st.s
    if s.embedded_postgres:
        datastores.write_postgres_conf(s, st.who)
    if s.embedded_redis:
        datastores.write_redis_conf(s, st.sec, st.who)
    supervisor.write_launcher(s)
    system.make_dir(s.run_dir / "env", st.who, 0o700)
    system.make_dir(s.backups_dir, st.who, 0o700)  # the backup component writes and prunes there
    airflow_env = st.airflow_env()
    root = system.is_root()
    limits = memlimit.prepare(s, [c.name for c in st.comps if c.name.startswith(components.WORKER_PREFIX)], st.who)
    for c in st.comps:
        env = {**supervisor.component_env(c, st.base_env(), airflow_env), **limits.get(c.name, {})}
        secrets_mod.write_private(supervisor.env_file(s, c.name), json.dumps(env, indent=1),
                                  st.who.uid if root else None, st.who.gid if root else None)
    text = supervisor.render(s, st.comps, st.who.name if root else None)
    secrets_mod.write_private(s.supervisord_conf, text)
    # Private: the settings include the alert webhook URL, which may hold a token. The service user
    # owns it: components that run as that user (the backup schedule) read the running stack's settings.
    secrets_mod.write_private(s.home / EFFECTIVE_FILE, json.dumps(s.to_json(), indent=2) + "\n",
                              st.who.uid if root else None, st.who.gid if root else None)
    install_alert_plugin(s, st.who)
    install_plugin(s, DISK_PLUGIN_FILE, DISK_PLUGIN_SOURCE, bool(s.disk_critical_mb))


ALERT_PLUGIN_FILE = "resource_alerts.py"
ALERT_PLUGIN_SOURCE = """\
# Installed by the apache-airflow resource while an alert webhook is set (APACHE_AIRFLOW_ALERT_WEBHOOK_URL),
# removed when none is. Do not edit: the listener is airflow_resource/in_airflow/alert_plugin.py.
from airflow_resource.in_airflow.alert_plugin import ResourceAlertsPlugin  # noqa: F401
"""
DISK_PLUGIN_FILE = "resource_disk_guard.py"
DISK_PLUGIN_SOURCE = """\
# Installed by the apache-airflow resource while APACHE_AIRFLOW_DISK_CRITICAL_MB is above 0: the api-server
# refuses new DAG runs while the disk is nearly full. Do not edit: see airflow_resource/in_airflow/disk_plugin.py.
from airflow_resource.in_airflow.disk_plugin import ResourceDiskGuardPlugin  # noqa: F401
"""


def install_alert_plugin(s: Settings, who: system.RunAs) -> None:
    """The listener plugin in the plugins folder, and the alert spool, exactly while a webhook is set."""
    if s.alert_webhook_url:
        system.make_dir(s.alerts_dir, who, 0o750)
    install_plugin(s, ALERT_PLUGIN_FILE, ALERT_PLUGIN_SOURCE, bool(s.alert_webhook_url))


def install_plugin(s: Settings, name: str, source: str, wanted: bool) -> None:
    """One of the resource's plugin files in the plugins folder exactly while it is wanted."""
    path = s.plugins_dir / name
    if not wanted:
        path.unlink(missing_ok=True)
        return
    path.write_text(source)
    path.chmod(0o644)


def launch_supervisord(st: Stack) -> None:
    s = st.s
    s.supervisord_socket.unlink(missing_ok=True)
    # A clean environment: components see what their env file says, not the caller's shell.
    env = {"PATH": airflow_config.child_path(s), "LANG": "C.UTF-8", MARKER_ENV: str(s.home)}
    proc = subprocess.run([str(Path(s.venv) / "bin" / "supervisord"), "-c", str(s.supervisord_conf)],
                          env=env, capture_output=True, text=True, cwd=s.home)
    if proc.returncode != 0:
        raise CommandError(f"supervisord did not start: {(proc.stderr or proc.stdout).strip()[-800:]}",
                           f"see {s.logs_dir / 'supervisord.log'}")
    deadline = time.monotonic() + SUPERVISORD_UP_TIMEOUT_S
    while not supervisor.is_up(s.supervisord_socket):
        if time.monotonic() > deadline:
            raise CommandError("supervisord did not answer on its socket", f"see {s.logs_dir / 'supervisord.log'}")
        time.sleep(0.1)


def last_error(s: Settings, name: str) -> str | None:
    """The last line of a component's log that looks like an error."""
    path = s.component_logs_dir / f"{name}.log"
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if any(k in line for k in ("ERROR", "FATAL", "Error", "Traceback", "Exception", "refused")):
            return line.strip()[:300]
    return None


def _probe(c: Component, ctx: ProbeContext, infos: dict[str, dict[str, Any]]) -> tuple[bool, str]:
    """A component's probe, told when supervisord started it (older heartbeats are a dead process's)."""
    return c.probe.check(ctx, infos.get(c.name, {}).get("start") or None)


def wait_ready(st: Stack, comps: list[Component], deadline: float, label: str) -> None:
    """Poll the components' probes until all pass; fail fast on a component supervisord gave up on."""
    pending = {c.name: c for c in comps}
    started = time.monotonic()
    with printer.status(f"waiting for {label}") as spinner:
        while pending:
            infos = {i["name"]: i for i in st.rpc().getAllProcessInfo()}
            for name in list(pending):
                state = infos.get(name, {}).get("statename")
                if state in supervisor.NOT_STARTED:
                    raise CommandError(
                        f"{name} failed to start ({state}): {last_error(st.s, name) or infos[name].get('spawnerr')}",
                        f"read its log: resource-apache-airflow logs {name} --tail 100",
                    )
            ctx = st.probe_context()
            with ThreadPoolExecutor(max_workers=len(pending)) as pool:
                results = dict(zip(pending, pool.map(lambda c: _probe(c, ctx, infos), pending.values())))
            for name, (ok, _detail) in results.items():
                # STARTING counts once the probe passes: startsecs is a crash guard, not readiness.
                if ok and infos.get(name, {}).get("statename") in supervisor.UP:
                    printer.ok(f"{name} ready ({time.monotonic() - started:.1f} s)")
                    del pending[name]
            if not pending:
                return
            if time.monotonic() > deadline:
                details = "; ".join(f"{n}: {results[n][1]}" for n in pending)
                raise CommandError(f"not ready before the timeout: {details}",
                                   "see `resource-apache-airflow status --verbose` and `logs <component>`; "
                                   "a slower machine may need --timeout")
            spinner.update(f"waiting for {', '.join(pending)} ({time.monotonic() - started:.0f} s)")
            time.sleep(POLL_S)


def start_group(st: Stack, comps: list[Component]) -> None:
    rpc = st.rpc()
    for c in comps:
        try:
            rpc.startProcess(c.name, False)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString:
                raise CommandError(f"supervisord could not start {c.name}: {fault.faultString}",
                                   f"read its log: resource-apache-airflow logs {c.name}") from None


def migrate(st: Stack) -> None:
    """Migrate the metadata database once per Airflow version (the venv's: a new pinned set migrates)."""
    s = st.s
    if s.embedded_postgres:
        datastores.ensure_roles_and_databases(s, st.sec)
    migrated = s.airflow_home / f".migrated-{installer.home_airflow_version(s)}"
    if not migrated.exists():
        t = time.monotonic()
        with printer.status("migrating the Airflow metadata database (first start: up to a minute)"):
            proc = st.run_airflow([str(s.venv / "bin" / "airflow"), "db", "migrate"], MIGRATE_TIMEOUT_S)
        if proc.returncode != 0:
            raise CommandError("airflow db migrate failed:\n" + (proc.stderr or proc.stdout).strip()[-2000:],
                               "fix the error above, then run `manage start` again")
        migrated.write_text(f"{time.time()}\n")
        st.migrate_s = time.monotonic() - t
        printer.ok(f"metadata database migrated ({st.migrate_s:.1f} s)")


def restore_unacked_tasks(st: Stack) -> int:
    """Put back in their queue the Celery messages a dead worker had taken but not acknowledged.

    Workers acknowledge a task only after it ran (Airflow's task_acks_late), so a worker killed with
    tasks it had reserved leaves them in Redis' `unacked` set, where kombu restores them only after
    the broker's visibility timeout (Airflow: 24 h): their task instances stay queued until the
    scheduler's task_queued_timeout (600 s). At start no worker of this stack runs, so every
    unacknowledged message is orphaned: kombu's own restore, with a visibility timeout of 0, puts
    them back now. A message whose task has meanwhile run is refused by the Execution API (the task
    instance is no longer queued) and costs nothing. Only the embedded Redis: an external one may
    serve workers of another stack that are running."""
    if not st.s.embedded_redis:
        return 0
    from kombu import Connection

    try:
        with Connection(airflow_config.redis_url(st.s, st.sec), transport_options={"visibility_timeout": 0},
                        connect_timeout=5) as conn:
            channel = conn.default_channel
            count = channel.client.zcard(channel.unacked_index_key)
            if count:
                channel.qos.restore_visible(num=count, interval=1)
    except Exception as exc:  # noqa: BLE001 - never block a start on it: the scheduler's timeout still acts
        printer.warn(f"could not put back unacknowledged Celery tasks ({exc.__class__.__name__}: {exc}); "
                     "their task instances are queued again after the scheduler's task_queued_timeout")
        return 0
    if count:
        printer.ok(f"{count} Celery task(s) taken by workers that died put back in the queue")
    return count


def create_admin(st: Stack) -> None:
    """Create the admin once (a one-off process; it needs the migrated database, not the servers)."""
    s = st.s
    admin_marker = s.airflow_home / f".admin-{s.admin_user}"
    if admin_marker.exists():
        return
    t = time.monotonic()
    source = standalone.source("admin_user")
    proc = st.run_airflow(
        [str(s.venv / "bin" / "python"), "-"], ADMIN_TIMEOUT_S, stdin=source,
        extra_env={"APACHE_AIRFLOW_ADMIN_USER": s.admin_user, "APACHE_AIRFLOW_ADMIN_PASSWORD": st.sec.admin_password},
    )
    if proc.returncode != 0:
        raise CommandError("creating the admin user failed:\n" + (proc.stderr or proc.stdout).strip()[-2000:],
                           "fix the error above, then run `manage start` again")
    admin_marker.write_text(f"{time.time()}\n")
    printer.ok(f"admin user {s.admin_user} ready ({time.monotonic() - t:.1f} s)")


def warm_execution_api(s: Settings, deadline: float) -> None:
    """Each api-server worker builds its Execution API (Cadwyn's versioned routes) on the first request
    it gets, seconds of CPU during which that worker answers nothing: the first task would wait for it.
    Concurrent requests reach every worker (a busy one accepts nothing), so build it now."""
    url = f"{s.api_url}/execution/health"
    n = 2 * int({**airflow_config.tuning(s), **s.airflow_options}["AIRFLOW__API__WORKERS"])
    t = time.monotonic()

    def hit(_: int) -> int:
        try:
            return probes.http_get(url, timeout=max(1.0, deadline - time.monotonic()))[0]
        except OSError:
            return 0

    with ThreadPoolExecutor(max_workers=n) as pool:  # no spinner: it runs beside wait_ready's
        codes = list(pool.map(hit, range(n)))
    if all(c == 200 for c in codes):
        printer.ok(f"Execution API warm ({time.monotonic() - t:.1f} s)")
    else:
        printer.warn(f"Execution API warm-up answered {codes}: the first tasks may wait for it")


def start(s: Settings, timeout: float, wait: bool = True) -> Stack:
    if is_running(s):
        raise AlreadySo(f"already running from {s.home}", "`status` shows its health; `manage restart` restarts it")
    installer.check_home_owner(s)
    installer.check_pinned_set(s)
    # Ports first, before any install work: the table needs no real secrets to know its ports.
    check_ports(components.build(s, secrets_mod.placeholder()))
    if not installer.is_installed(s):
        s = installer.install(s)
    begun = time.monotonic()
    st = Stack.load(s)
    if s.embedded_postgres and datastores.is_initialised(s):
        datastores.check_data_version(s, system.pg_bindir() or Path("/nonexistent"))
    low = diskspace.critical(stack_disk.watched_paths(s), s.disk_critical_mb)
    if low is not None:
        printer.warn(diskspace.refusal(low, s.disk_critical_mb))
    leftovers = stack_processes(s)
    if leftovers:
        raise CommandError(f"{len(leftovers)} process(es) of an earlier run of this home are still alive "
                           f"(pids {', '.join(str(p.pid) for p in leftovers[:8])})",
                           "run `resource-apache-airflow manage stop --force` first")
    write_configs(st)
    printer.step(f"starting supervisord ({s.supervisord_conf})")
    launch_supervisord(st)
    # Readiness deadline is for the servers; the one-off migration has its own.
    deadline = time.monotonic() + timeout
    data = [c for c in st.comps if c.priority == components.DATA]
    if data:
        start_group(st, data)
        wait_ready(st, data, deadline, " ".join(c.name for c in data))
    migrate(st)
    restore_unacked_tasks(st)
    # Before the servers: the api-server and this one-off process would both sync FAB's roles.
    create_admin(st)
    # Group by group (the api-server's two workers already keep both cores busy while it starts;
    # Flower must find the Celery workers up, it does not see them arrive later). While the rest
    # starts, every api-server worker builds its Execution API, which the first task would wait for.
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(max_workers=1) as background:
        warm = None
        for group in components.groups(st.comps):
            if group[0].priority == components.DATA:
                continue
            start_group(st, group)
            if wait:
                wait_ready(st, group, deadline, " ".join(c.name for c in group))
                if group[0].priority == components.API:
                    warm = background.submit(warm_execution_api, s, deadline)
        if warm is not None:
            warm.result()
    if wait:
        printer.ok(f"all {len(st.comps)} components healthy in {time.monotonic() - begun:.1f} s")
    return st


GIVEN_UP = supervisor.GIVEN_UP


def revive(s: Settings, timeout: float) -> None:
    """Start again the components of the running stack that supervisord gave up on (after a full disk,
    a lost database: crashes that outlast its retries), once the cause is fixed. Exit 2 when none."""
    st = Stack.load(s)
    infos = {i["name"]: i for i in st.rpc().getAllProcessInfo()}
    dead = [c for c in st.comps if infos.get(c.name, {}).get("statename") in GIVEN_UP]
    if not dead:
        raise AlreadySo(f"already running from {s.home}", "`status` shows its health; `manage restart` restarts it")
    names = " ".join(c.name for c in dead)
    printer.step(f"starting {names}: supervisord had given up on them")
    start_group(st, dead)
    wait_ready(st, dead, time.monotonic() + timeout, names)


def scale(s: Settings, workers: int, timeout: float) -> None:
    """Change the number of Celery workers of the running stack without restarting anything else:
    new workers are added to supervisord and started, removed ones finish their running tasks (warm
    shutdown) and leave. Effective until the next start."""
    if not is_running(s):
        raise CommandError(f"the stack in {s.home} is not running",
                           f"start it with {workers} worker(s): APACHE_AIRFLOW_WORKERS={workers} "
                           "resource-apache-airflow manage start")
    if s.log_server_port + workers > 65535:
        raise CommandError(f"{workers} workers need log server ports up to {s.log_server_port + workers}",
                           "lower APACHE_AIRFLOW_LOG_SERVER_PORT, or use fewer workers")
    if workers == s.workers:
        raise AlreadySo(f"the stack already runs {workers} worker(s)", "`status` lists them")
    old = Stack.load(s)
    st = Stack.load(dataclasses.replace(s, workers=workers))
    before, after = {c.name for c in old.comps}, {c.name for c in st.comps}
    added = [c for c in st.comps if c.name not in before]
    removed = [c for c in old.comps if c.name not in after]
    check_ports(added)
    write_configs(st)
    rpc = st.rpc()
    rpc.reloadConfig()
    for c in removed:
        printer.step(f"stopping {c.name} (running tasks finish first, up to {c.stop_timeout} s)")
        rpc.stopProcessGroup(c.name, False)
    for c in added:
        rpc.addProcessGroup(c.name)
    if added:
        start_group(st, added)
        wait_ready(st, added, time.monotonic() + timeout, " ".join(c.name for c in added))
    for c in removed:
        _wait_stopped(st, c, time.monotonic() + c.stop_timeout + KILL_WAIT_S)
        rpc.removeProcessGroup(c.name)
        printer.ok(f"{c.name} stopped")


def _wait_stopped(st: Stack, c: Component, deadline: float) -> None:
    while time.monotonic() < deadline:
        if st.rpc().getProcessInfo(c.name)["statename"] in supervisor.STOPPED:
            return
        time.sleep(POLL_S)
    raise CommandError(f"{c.name} did not stop in time", f"read its log: resource-apache-airflow logs {c.name}")


# ---------------------------------------------------------------- stop

def stack_processes(s: Settings) -> list[psutil.Process]:
    """Every live process of this stack: those carrying the home's marker in their environment
    (supervisord, components, task processes) and the members of every component's recorded
    process group (which finds the processes that set their title and so blanked their environ)."""
    pids: set[int] = set()
    for group in _recorded_groups(s).values():
        pids.update(group)
    for p in psutil.process_iter(["pid"]):
        try:
            if p.environ().get(MARKER_ENV) == str(s.home):
                pids.add(p.pid)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
            continue
    return _processes(_with_descendants(pids) - {os.getpid()})


def component_processes(s: Settings) -> dict[str, list[psutil.Process]]:
    """The stack's live processes by component (its recorded group and their descendants: PostgreSQL's
    backends, task processes); the rest (supervisord) under 'other'."""
    groups: dict[str, list[psutil.Process]] = {}
    seen: set[int] = {os.getpid()}
    for name, members in sorted(_recorded_groups(s).items()):
        pids = _with_descendants(set(members)) - seen
        seen |= pids
        groups[name] = _processes(pids)
    groups["other"] = [p for p in stack_processes(s) if p.pid not in seen]
    return groups


def _recorded_groups(s: Settings) -> dict[str, list[int]]:
    groups = {}
    for record in (s.run_dir / launch.PIDS_DIR).glob("*"):
        rec = launch.read_record(str(record))
        if rec:
            groups[record.name] = launch.group_members(*rec)
    return groups


def _with_descendants(pids: set[int]) -> set[int]:
    # Children that started their own session (PostgreSQL's backends and auxiliaries) are
    # neither in the group nor tagged: take every descendant too.
    found = set(pids)
    for pid in pids:
        try:
            found.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            continue
    return found


def _processes(pids: set[int]) -> list[psutil.Process]:
    procs = []
    for pid in sorted(pids):
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    return procs


def kill_all(procs: list[psutil.Process], sig: int) -> None:
    for p in procs:
        try:
            p.send_signal(sig)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def stop_in_order(s: Settings, deadline: float) -> None:
    """Stop group by group, edge first and data stores last, so nothing loses its database mid-stop.
    Once the workers are down (their tasks had the stop grace to finish), tasks killed with them are
    queued again while the database still runs."""
    st = Stack.load(s)
    has_workers = any(c.name.startswith(components.WORKER_PREFIX) for c in st.comps)
    rpc = supervisor.client(s.supervisord_socket, 10).supervisor
    for group in reversed(components.groups(st.comps)):
        if group[0].priority == components.DATA and has_workers:
            requeue_killed_tasks(st)
        names = [c.name for c in group]
        for name in names:
            try:
                rpc.stopProcess(name, False)
            except xmlrpc.client.Fault as fault:
                if "NOT_RUNNING" not in fault.faultString and "BAD_NAME" not in fault.faultString:
                    raise
        while time.monotonic() < deadline:
            states = [i["statename"] for i in rpc.getAllProcessInfo() if i["name"] in names]
            if all(state in supervisor.STOPPED_OR_WAITING for state in states):
                break
            time.sleep(0.1)


def requeue_killed_tasks(st: Stack) -> list[dict[str, Any]]:
    """Tasks this machine still had running when its workers stopped were killed: record their try
    as failed and clear them (a new try at the next start) through Airflow (requeue_tasks.py). A
    cheap count first: most stops find nothing, and the script imports Airflow (seconds)."""
    try:
        import psycopg2

        with psycopg2.connect(airflow_config.postgres_url(st.s, st.sec, driver="postgresql"), connect_timeout=5) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM task_instance WHERE state IN ('running', 'restarting')")
                if cur.fetchone()[0] == 0:
                    return []
    except Exception as exc:  # noqa: BLE001 - the database may be gone or never migrated: nothing to do
        printer.warn(f"could not check for tasks killed by the stop ({exc.__class__.__name__}); "
                     "the scheduler fails them after its heartbeat timeout once started again")
        return []
    source = standalone.source("requeue_tasks")
    proc = st.run_airflow([str(st.s.venv / "bin" / "python"), "-"], REQUEUE_TIMEOUT_S, stdin=source)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        printer.warn("queueing again the tasks the stop killed failed: the scheduler fails them after its "
                     "heartbeat timeout (retried if they have retries left):\n" + (proc.stderr or proc.stdout)[-1500:])
        return []
    requeued = json.loads(lines[-1])
    for ti in requeued:
        index = f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""
        printer.warn(f"{ti['dag_id']} {ti['run_id']} {ti['task_id']}{index} try {ti['try_number']} was still "
                     "running after the stop grace: killed, queued again for the next start")
    return requeued


def _describe_process(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())[:60] or p.name()
    except psutil.Error:
        return str(p.pid)


def stop(s: Settings, timeout: float, force: bool = False) -> int:
    """Stop every component (reverse order, supervisord's stopwaitsecs), then anything left. Returns count killed."""
    running = is_running(s)
    if not running and not stack_processes(s):
        raise AlreadySo(f"not running ({s.home})", "`manage start` starts it")
    deadline = time.monotonic() + timeout
    if running and not force:
        printer.step("stopping components in reverse start order (running tasks get time to finish)")
        try:
            stop_in_order(s, deadline)
        except (OSError, xmlrpc.client.Error) as exc:
            printer.warn(f"supervisord did not stop the components cleanly ({exc}); killing what is left")
    if running:
        try:
            supervisor.client(s.supervisord_socket, 5).supervisor.shutdown()
        except (OSError, xmlrpc.client.Error):
            pass
        pid = supervisor.supervisord_pid(s)
        while pid and psutil.pid_exists(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    # Whatever is still alive (a hung component, orphaned task processes, --force): TERM, then KILL.
    left = stack_processes(s)
    killed = len(left)
    if left:
        if not force:
            names = ", ".join(sorted({_describe_process(p) for p in left}))
            printer.warn(f"{len(left)} process(es) still alive after the graceful stop ({names}): terminating")
        kill_all(left, signal.SIGTERM if not force else signal.SIGKILL)
        _gone, alive = psutil.wait_procs(left, timeout=KILL_WAIT_S if not force else 1)
        kill_all(alive, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=KILL_WAIT_S)
    s.supervisord_socket.unlink(missing_ok=True)
    (s.home / EFFECTIVE_FILE).unlink(missing_ok=True)
    remaining = stack_processes(s)
    if remaining:
        raise CommandError(f"{len(remaining)} process(es) survived SIGKILL: {[p.pid for p in remaining]}",
                           "they may be stuck in the kernel (D state); check `ps -o pid,stat,cmd -p <pid>`")
    memlimit.remove(s)
    printer.ok("stopped; no process of the stack is left")
    return killed


# ---------------------------------------------------------------- status

def status(s: Settings, verbose: bool = False) -> dict[str, Any]:
    """Per-component state from supervisord plus a real probe, in parallel: answers in well under a second.
    verbose: also what the pipelines are doing (activity.py), read while the probes run."""
    disk = stack_disk.report(s)
    report: dict[str, Any] = {"resource": "apache-airflow", "home": str(s.home), "running": False,
                              "healthy": False, "degraded": disk["level"] != diskspace.OK,
                              "airflow_version": installer.home_airflow_version(s),
                              "pinned_set": installer.home_set(s).name, "ui": s.api_url,
                              "components": [], "disk": disk}
    if not is_running(s):
        return report
    st = Stack.load(s)
    infos = {i["name"]: i for i in st.rpc().getAllProcessInfo()}
    ctx = st.probe_context()
    now = time.time()
    with ThreadPoolExecutor(max_workers=len(st.comps) + 1) as pool:
        if verbose:
            from airflow_resource.stack import activity

            pipelines = pool.submit(activity.read, s, st.sec)
        probes = list(pool.map(lambda c: _probe(c, ctx, infos)
                               if infos.get(c.name, {}).get("statename") == supervisor.RUNNING else (False, "not running"),
                               st.comps))
        if verbose:
            report["pipelines"] = pipelines.result()
    for c, (ok, detail) in zip(st.comps, probes):
        info = infos.get(c.name, {})
        running = info.get("statename") == supervisor.RUNNING
        entry = {
            "name": c.name,
            "state": info.get("statename", "UNKNOWN"),
            "running": running,
            "healthy": bool(running and ok),
            "pid": info.get("pid") or None,
            "port": c.port,
            "uptime_s": round(now - info["start"]) if running and info.get("start") else None,
            "detail": detail,
            "last_error": None if (running and ok) else (last_error(s, c.name) or info.get("spawnerr") or None),
        }
        if running and c.name.startswith(components.WORKER_PREFIX):
            entry.update(memlimit.stats(s, info["pid"]) or {})  # memory_mb, memory_limit_mb, oom_kills
        report["components"].append(entry)
    report["running"] = any(e["running"] for e in report["components"])
    report["healthy"] = all(e["healthy"] for e in report["components"])
    return report
