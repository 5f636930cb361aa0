"""Component launcher: clear what an earlier instance of this component left behind, then exec it.

When a component's main process is SIGKILLed, its children (the scheduler's
health server, a worker's log server and pool, uvicorn workers, PostgreSQL
backends) outlive it and hold its ports, so the copy supervisord restarts
cannot bind them. Two ways find them:
- the process group: supervisord makes each program a group leader, children
  stay in that group, and the launcher records its group in run/pids/<name>;
- the tag APACHE_AIRFLOW_COMPONENT=<name> in the environment, for children that
  left the group (processes that set their title blank /proc/<pid>/environ,
  so the tag alone is not enough).
Standalone on purpose (copied to <home>/run/launch.py and run by the venv's
Python as the service user): imports only the stdlib.

The component's environment (secrets included) comes from the JSON file named
by APACHE_AIRFLOW_ENV_FILE, so no secret sits in supervisord.conf or on a command line.

usage: python launch.py -- COMMAND [ARG...]
"""

import json
import os
import resource
import signal
import sys
import time

TAG_ENV = "APACHE_AIRFLOW_COMPONENT"
HOME_ENV = "APACHE_AIRFLOW_RESOURCE_HOME"
ENV_FILE_ENV = "APACHE_AIRFLOW_ENV_FILE"  # JSON object: the component's environment (0600, holds secrets)
PIDS_DIR = "pids"                          # beside this file: <home>/run/pids/<component>
GONE_WAIT_S = 5.0
CGROUP_ENV = "APACHE_AIRFLOW_MEMORY_CGROUP"  # memlimit.py's names (this file imports only the stdlib)
RLIMIT_ENV = "APACHE_AIRFLOW_RLIMIT_DATA_MB"
MEMFD_VARS_ENV = "APACHE_AIRFLOW_MEMFD_VARS"  # comma-separated names whose values are file content


def memfd_vars() -> None:
    """Hand file-valued secrets (the JWT private key) over as memfds: each variable named in
    APACHE_AIRFLOW_MEMFD_VARS holds the file's content; it is written to an anonymous memory file and the
    variable set to /proc/self/fd/N, which only this process and its children can open. No file on disk."""
    for name in filter(None, os.environ.pop(MEMFD_VARS_ENV, "").split(",")):
        content = os.environ.get(name)
        if content is None:
            continue
        fd = os.memfd_create(name.lower(), 0)
        os.write(fd, content.encode())
        os.set_inheritable(fd, True)  # the exec'd component and its forks open it by path
        os.environ[name] = f"/proc/self/fd/{fd}"


def _stat(pid: int) -> tuple[int, int] | None:
    """(process group, start time in clock ticks since boot) of a live process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[2]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def group_members(pgid: int, leader_start: int) -> list[int]:
    """Live processes of a recorded group. The group is ours if its leader is dead (Linux does not
    reuse a pid while a group still carries it) or is the very process recorded (same start time)."""
    leader = _stat(pgid)
    if leader is not None and leader[1] != leader_start:
        return []  # the number now belongs to another process: not our group
    me = os.getpid()
    return [pid for pid in _pids() if pid != me and (_stat(pid) or (None,))[0] == pgid]


def read_record(path: str) -> tuple[int, int] | None:
    try:
        with open(path) as f:
            pgid, start = f.read().split()
        return int(pgid), int(start)
    except (OSError, ValueError):
        return None


def tagged(tag: bytes, home: bytes) -> list[int]:
    me = os.getpid()
    found = []
    for pid in _pids():
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        if tag in env and home in env:
            found.append(pid)
    return found


def leftovers(name: str, home: str, record: str) -> list[int]:
    found = set(tagged(f"{TAG_ENV}={name}".encode(), f"{HOME_ENV}={home}".encode()))
    rec = read_record(record)
    if rec:
        found.update(group_members(*rec))
    return sorted(found)


def limit_memory() -> None:
    """Put this process (and so everything it forks) under the worker memory limit (memlimit.py):
    join the memory cgroup made for it, or set RLIMIT_DATA where none could be made."""
    cgroup = os.environ.pop(CGROUP_ENV, None)
    rlimit_mb = os.environ.pop(RLIMIT_ENV, None)
    if cgroup:
        try:
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        except OSError as exc:
            print(f"launch: WARNING could not join the memory cgroup {cgroup} ({exc}): this worker has no "
                  "memory limit", file=sys.stderr, flush=True)
    if rlimit_mb:
        limit = int(rlimit_mb) * 2**20
        _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)  # an unprivileged process cannot raise its hard limit
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print("usage: launch.py -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    command = argv[argv.index("--") + 1:]
    env_file = os.environ.pop(ENV_FILE_ENV, None)
    if env_file:
        try:
            with open(env_file) as f:
                env = json.load(f)
            if not isinstance(env, dict):
                raise ValueError(f"a JSON object was expected, found {type(env).__name__}")
        except (OSError, ValueError) as exc:
            print(f"launch: ERROR the environment file {env_file} is unreadable or damaged ({exc}); "
                  "`./cli.sh manage restart` writes it anew", file=sys.stderr, flush=True)
            return 1
        os.environ.update(env)  # wins over what supervisord passed on
    limit_memory()
    memfd_vars()
    name, home = os.environ.get(TAG_ENV), os.environ.get(HOME_ENV)
    if name and home:
        pids_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), PIDS_DIR)
        record = os.path.join(pids_dir, name)
        stale = leftovers(name, home, record)
        if stale:
            print(f"launch: killing {len(stale)} leftover process(es) of {name}: {stale}", file=sys.stderr, flush=True)
            for pid in stale:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            deadline = time.monotonic() + GONE_WAIT_S
            while leftovers(name, home, record) and time.monotonic() < deadline:
                time.sleep(0.05)
        me = _stat(os.getpid())
        if me and me[0] == os.getpid():  # we lead our group (supervisord's setpgrp): record it
            os.makedirs(pids_dir, exist_ok=True)
            with open(record + ".tmp", "w") as f:
                f.write(f"{me[0]} {me[1]}\n")
            os.replace(record + ".tmp", record)
    os.execvp(command[0], command)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
