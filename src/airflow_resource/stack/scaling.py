"""Scale: change the number of Celery workers of the running stack, nothing else restarted."""

from __future__ import annotations

import dataclasses
import time

from airflow_resource import printer
from airflow_resource.config.settings import Settings
from airflow_resource.errors import AlreadySo, CommandError
from airflow_resource.stack import handle
from airflow_resource.stack import shutdown
from airflow_resource.stack import startup
from airflow_resource.stack import supervisor
from airflow_resource.stack.components import Component
from airflow_resource.stack.handle import Stack


def scale(s: Settings, workers: int, timeout: float) -> None:
    """Change the number of Celery workers of the running stack without restarting anything else:
    new workers are added to supervisord and started, removed ones finish their running tasks (warm
    shutdown) and leave. Effective until the next start."""
    if not handle.is_running(s):
        raise CommandError(f"the stack in {s.home} is not running",
                           f"start it with {workers} worker(s): APACHE_AIRFLOW_WORKERS={workers} "
                           "`./cli.sh manage start`")
    if s.log_server_port + workers > 65535:
        raise CommandError(f"{workers} workers need log server ports up to {s.log_server_port + workers}",
                           "lower APACHE_AIRFLOW_LOG_SERVER_PORT, or use fewer workers")
    if workers == s.workers:
        raise AlreadySo(f"the stack already runs {workers} worker(s)", "`./cli.sh status` lists them")
    old = Stack.load(s)
    st = Stack.load(dataclasses.replace(s, workers=workers))
    before, after = {c.name for c in old.comps}, {c.name for c in st.comps}
    added = [c for c in st.comps if c.name not in before]
    removed = [c for c in old.comps if c.name not in after]
    startup.check_ports(added)
    startup.write_configs(st)
    rpc = st.rpc()
    rpc.reloadConfig()
    for c in removed:
        printer.step(f"stopping {c.name} (running tasks finish first, up to {c.stop_timeout} s)")
        rpc.stopProcessGroup(c.name, False)
    for c in added:
        rpc.addProcessGroup(c.name)
    if added:
        startup.start_group(st, added)
        startup.wait_ready(st, added, time.monotonic() + timeout, " ".join(c.name for c in added))
    for c in removed:
        _wait_stopped(st, c, time.monotonic() + c.stop_timeout + shutdown.KILL_WAIT_S)
        rpc.removeProcessGroup(c.name)
        printer.ok(f"{c.name} stopped")


def _wait_stopped(st: Stack, c: Component, deadline: float) -> None:
    while time.monotonic() < deadline:
        if st.rpc().getProcessInfo(c.name)["statename"] in supervisor.STOPPED:
            return
        time.sleep(startup.POLL_S)
    raise CommandError(f"{c.name} did not stop in time", f"read its log: `./cli.sh logs {c.name}`")
