"""Stop: the components in reverse start order with the stop grace, the tasks it killed queued again,
then every leftover process of the stack."""

from __future__ import annotations

import json
import signal
import time
import xmlrpc.client
from typing import Any

import psutil

from airflow_resource import printer
from airflow_resource import standalone
from airflow_resource.config import airflow_config
from airflow_resource.config.settings import EFFECTIVE_FILE, Settings
from airflow_resource.errors import AlreadySo, CommandError
from airflow_resource.stack import components
from airflow_resource.stack import handle
from airflow_resource.stack import memlimit
from airflow_resource.stack import supervisor
from airflow_resource.stack.handle import Stack

REQUEUE_TIMEOUT_S = 120
KILL_WAIT_S = 5


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
    running = handle.is_running(s)
    if not running and not handle.stack_processes(s):
        raise AlreadySo(f"not running ({s.home})", "`./cli.sh manage start` starts it")
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
    left = handle.stack_processes(s)
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
    remaining = handle.stack_processes(s)
    if remaining:
        raise CommandError(f"{len(remaining)} process(es) survived SIGKILL: {[p.pid for p in remaining]}",
                           "they may be stuck in the kernel (D state); check `ps -o pid,stat,cmd -p <pid>`")
    memlimit.remove(s)
    printer.ok("stopped; no process of the stack is left")
    return killed
