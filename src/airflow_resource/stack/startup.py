"""Start: the stack in dependency order with readiness deadlines, and start again what supervisord gave up on."""

from __future__ import annotations

import json
import subprocess
import time
import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from airflow_resource import audit
from airflow_resource import printer
from airflow_resource.config import airflow_config
from airflow_resource.config import secrets as secrets_mod
from airflow_resource.config import settings as settings_mod
from airflow_resource.config.settings import EFFECTIVE_FILE, Settings
from airflow_resource.errors import AlreadySo, CommandError
from airflow_resource.in_airflow import diskspace
from airflow_resource.stack import disk as stack_disk
from airflow_resource.stack import components
from airflow_resource.stack import datastores
from airflow_resource.stack import handle
from airflow_resource.stack import home_layout
from airflow_resource.stack import health
from airflow_resource.stack import installer
from airflow_resource.stack import memlimit
from airflow_resource.stack import oneoffs
from airflow_resource.stack import plugins
from airflow_resource.stack import supervisor
from airflow_resource.stack import system
from airflow_resource.stack import tls_files
from airflow_resource.config import tls
from airflow_resource.stack.components import Component
from airflow_resource.stack.handle import Stack

SUPERVISORD_UP_TIMEOUT_S = 15
POLL_S = 0.25


def check_ports(comps: list[Component]) -> None:
    for c in comps:
        if c.port and system.port_in_use(c.port):
            raise CommandError(
                f"port {c.port} for {c.name} is in use by {system.who_listens(c.port)}",
                f"stop that process, or choose another port: {settings_mod.BY_NAME[c.port_setting].env}=<port>",
            )


def write_configs(st: Stack) -> None:
    """Everything a start writes, on a stopped stack: the home's layout created or repaired first (so every
    file below lands in a directory root owns, or the data user's through a directory fd), all root's."""
    s = st.s
    owners = home_layout.owners(s, create_users=True)
    home_layout.apply(s, owners)
    if s.embedded_postgres:
        datastores.write_postgres_conf(s, owners.data)
    if s.embedded_redis:
        datastores.write_redis_conf(s, st.sec, owners.data)
    supervisor.write_launcher(s)
    airflow_env = st.airflow_env()
    root = system.is_root()
    limits = memlimit.prepare(s, [c.name for c in st.comps if c.name.startswith(components.WORKER_PREFIX)], st.who)
    tls_key = tls_files.api_server_env(s)  # the certificates made or checked; the key for the api-server's memfd
    for c in st.comps:
        env = {**supervisor.component_env(c, st.base_env(), airflow_env), **limits.get(c.name, {})}
        if c.name == "api-server":
            env = supervisor.merge_env(env, tls_key)
        # root's: the launcher reads it as root, before it drops to the component's user
        secrets_mod.write_private(supervisor.env_file(s, c.name), json.dumps(env, indent=1))
    users = {"service": owners.service.name, "data": owners.data.name} if root else None
    secrets_mod.write_private(s.supervisord_conf, supervisor.render(s, st.comps, users))
    # Private (the alert webhook URL may hold a token) and root's: root commands take settings from it.
    secrets_mod.write_private(s.home / EFFECTIVE_FILE, json.dumps(s.to_json(), indent=2) + "\n")
    plugins.install_all(s, st.who)


def launch_supervisord(st: Stack) -> None:
    s = st.s
    s.supervisord_socket.unlink(missing_ok=True)
    # A clean environment: components see what their env file says, not the caller's shell.
    env = {"PATH": airflow_config.child_path(s), "LANG": "C.UTF-8", handle.MARKER_ENV: str(s.home)}
    proc = subprocess.run([str(Path(s.venv) / "bin" / "supervisord"), "-c", str(s.supervisord_conf)],
                          env=env, capture_output=True, text=True, cwd=s.home, umask=supervisor.UMASK)
    if proc.returncode != 0:
        raise CommandError(f"supervisord did not start: {(proc.stderr or proc.stdout).strip()[-800:]}",
                           f"see {s.logs_dir / 'supervisord.log'}")
    deadline = time.monotonic() + SUPERVISORD_UP_TIMEOUT_S
    while not supervisor.is_up(s.supervisord_socket):
        if time.monotonic() > deadline:
            raise CommandError("supervisord did not answer on its socket", f"see {s.logs_dir / 'supervisord.log'}")
        time.sleep(0.1)


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
                        f"{name} failed to start ({state}): {health.last_error(st.s, name) or infos[name].get('spawnerr')}",
                        f"read its log: `./cli.sh logs {name} --tail 100`",
                    )
            ctx = st.probe_context()
            with ThreadPoolExecutor(max_workers=len(pending)) as pool:
                results = dict(zip(pending, pool.map(lambda c: health.probe(c, ctx, infos), pending.values())))
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
                                   "see `./cli.sh status --verbose` and `./cli.sh logs <component>`; "
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
                                   f"read its log: `./cli.sh logs {c.name}`") from None


def start(s: Settings, timeout: float, wait: bool = True) -> Stack:
    if handle.is_running(s):
        raise AlreadySo(f"already running from {s.home}", "`./cli.sh status` shows its health; `./cli.sh manage restart` restarts it")
    tls.check(s)  # a network-facing api-server without TLS: refused before anything is written
    installer.check_home_owner(s)
    installer.check_pinned_set(s)
    # Ports first, before any install work: the table needs no real secrets to know its ports.
    check_ports(components.build(s, secrets_mod.placeholder()))
    laps = Laps()
    if not installer.is_installed(s):
        s = installer.install(s)
        laps.lap("install")
    begun = time.monotonic()
    st = Stack.load(s)
    if s.embedded_postgres and datastores.is_initialised(s):
        datastores.check_data_version(s, system.pg_bindir() or Path("/nonexistent"))
    low = diskspace.critical(stack_disk.watched_paths(s), s.disk_critical_mb)
    if low is not None:
        printer.warn(diskspace.refusal(low, s.disk_critical_mb))
    leftovers = handle.stack_processes(s)
    if leftovers:
        raise CommandError(f"{len(leftovers)} process(es) of an earlier run of this home are still alive "
                           f"(pids {', '.join(str(p.pid) for p in leftovers[:8])})",
                           "run `./cli.sh manage stop --force` first")
    laps.lap("checks")
    write_configs(st)
    printer.step(f"starting supervisord ({s.supervisord_conf})")
    launch_supervisord(st)
    laps.lap("configs and supervisord")
    # Readiness deadline is for the servers; the one-off migration has its own.
    deadline = time.monotonic() + timeout
    data = [c for c in st.comps if c.priority == components.DATA]
    if data:
        start_group(st, data)
        wait_ready(st, data, deadline, " ".join(c.name for c in data))
        laps.lap("data")
    oneoffs.migrate(st)
    laps.lap("migration")
    oneoffs.restore_unacked_tasks(st)
    # Before the servers: the api-server and this one-off process would both sync FAB's roles.
    oneoffs.create_admin(st)
    audit.flush_pending(st)  # the resource's actions recorded while the database was down (a restore)
    laps.lap("users and kept records")
    # Group by group, but the core group with the api-server (components.START_TOGETHER: it needs only
    # the data group), and the edge group after both (Flower must find the Celery workers up, it does
    # not see them arrive later). Once the api-server answers, every one of its workers builds its
    # Execution API in the background, which the first task would otherwise wait for.
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(max_workers=1) as background:
        warm = None
        groups = [g for g in components.groups(st.comps) if g[0].priority != components.DATA]
        launched: set[int] = set()
        for group in groups:
            if group[0].priority not in launched:  # it and the groups launched with it (START_TOGETHER)
                wave = _together(group)
                start_group(st, [c for g in groups if g[0].priority in wave for c in g])
                launched |= wave
            if wait:
                wait_ready(st, group, deadline, " ".join(c.name for c in group))
                laps.lap(f"{group[0].group} group")
                if group[0].priority == components.API:
                    warm = background.submit(oneoffs.warm_execution_api, s, deadline)
        if warm is not None:
            warm.result()
    if wait:
        printer.ok(f"all {len(st.comps)} components healthy in {time.monotonic() - begun:.1f} s")
        printer.info("start steps: {}", laps.line())
    return st


class Laps:
    """How long each step of a start took, said in one line at its end."""

    def __init__(self) -> None:
        self.t, self.laps = time.monotonic(), []

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps.append((name, now - self.t))
        self.t = now

    def line(self) -> str:
        return ", ".join(f"{name} {secs:.1f} s" for name, secs in self.laps)


def _together(group: list[components.Component]) -> frozenset[int]:
    """The priorities launched with this group: itself, or the whole START_TOGETHER set it belongs to."""
    p = group[0].priority
    return components.START_TOGETHER if p in components.START_TOGETHER else frozenset({p})


def revive(s: Settings, timeout: float) -> None:
    """Start again the components of the running stack that supervisord gave up on (after a full disk,
    a lost database: crashes that outlast its retries), once the cause is fixed. Exit 2 when none."""
    st = Stack.load(s)
    infos = {i["name"]: i for i in st.rpc().getAllProcessInfo()}
    dead = [c for c in st.comps if infos.get(c.name, {}).get("statename") in supervisor.GIVEN_UP]
    if not dead:
        raise AlreadySo(f"already running from {s.home}", "`./cli.sh status` shows its health; `./cli.sh manage restart` restarts it")
    names = " ".join(c.name for c in dead)
    printer.step(f"starting {names}: supervisord had given up on them")
    start_group(st, dead)
    wait_ready(st, dead, time.monotonic() + timeout, names)
