"""A loaded stack (settings, secrets, who runs it, its components, its environment) and its live processes:
what start, stop, status and the commands that need the running stack share."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from typing import Any

import psutil

from airflow_resource.config import airflow_config
from airflow_resource.config import tls
from airflow_resource.config import secrets as secrets_mod
from airflow_resource.config.secrets import Secrets
from airflow_resource.config.settings import Settings
from airflow_resource.stack import components
from airflow_resource.stack import supervisor
from airflow_resource.stack import system
from airflow_resource.stack.components import Component
from airflow_resource.stack.probes import ProbeContext
from airflow_resource.standalone import launch

MARKER_ENV = launch.HOME_ENV  # every process of a stack carries it: how stop finds leftovers


@dataclass
class Stack:
    """Everything derived from settings that start, stop and status need."""

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

    @property
    def data(self) -> system.RunAs:
        """Whom PostgreSQL and Redis run as (the data user under root)."""
        return system.run_as(self.s.data_user)

    def base_env(self) -> dict[str, str]:
        return {
            "PATH": airflow_config.child_path(self.s),
            "HOME": str(self.s.state_dir),  # the service user's (gunicorn's ~/.gunicorn); AIRFLOW_HOME is root's
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
        ca = tls.ca_file(self.s)
        return ProbeContext(self.s.api_url, airflow_config.redis_url(self.s, self.sec), self.s.workers,
                            str(ca) if ca else None)

    def rpc(self, timeout: float = supervisor.RPC_TIMEOUT_S) -> Any:
        return supervisor.client(self.s.supervisord_socket, timeout).supervisor

    def run_airflow(self, args: list[str], timeout: float, extra_env: dict[str, str] | None = None,
                    stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """A one-off Airflow command as the service user, with what one-offs need (never the signing key)."""
        env = {**airflow_config.oneoff_env(self.env()), **(extra_env or {})}
        return subprocess.run(
            args, env=env, cwd=self.s.airflow_home, input=stdin, capture_output=True, text=True, timeout=timeout,
            **self.who.popen_kwargs(),
        )


def is_running(s: Settings) -> bool:
    return supervisor.is_up(s.supervisord_socket)


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
