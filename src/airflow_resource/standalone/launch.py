"""Component launcher: clear what an earlier instance of this component left behind, then become the component.

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
Python): imports only the stdlib.

It starts as root under supervisord (no `user=` line): it reads the component's
environment (secrets included) from the root-only JSON file named by
APACHE_AIRFLOW_ENV_FILE (so no secret sits in supervisord.conf or on a command
line), kills the leftovers (reading other processes' environ needs root),
applies the memory limit, records the group, then drops to --user (setgroups,
setgid, setuid) with umask 027. A process that changed uid is not dumpable
(fs.suid_dumpable is 0): no other process of that user may read its
/proc/<pid>/environ or ptrace it. exec would make it dumpable again, so a
Python component of the venv (its `airflow` script, or its python with -m) runs
in this very process (runpy); only other programs (postgres, redis-server) are
exec'd. Without --user (the CLI does not run as root) nothing is dropped.

APACHE_AIRFLOW_MEMFD_VARS names (comma-separated) variables whose value is a
file's content (a private key): after the drop each is written to a memfd that
stays open across fork and exec, and the variable becomes /proc/self/fd/N, a
path only this process and its children can open.

usage: python launch.py [--user NAME] -- COMMAND [ARG...]
"""

import json
import os
import pwd
import resource
import runpy
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
MEMFD_VARS_ENV = "APACHE_AIRFLOW_MEMFD_VARS"  # names of variables whose content becomes a memfd path
UMASK = 0o027


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


def drop_to(user: str) -> None:
    """Become user for good: its primary group only, then gid, then uid (root cannot come back)."""
    pw = pwd.getpwnam(user)
    os.setgroups([pw.pw_gid])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    if os.getuid() != pw.pw_uid or os.geteuid() != pw.pw_uid:
        raise OSError(f"still uid {os.geteuid()} after setuid({pw.pw_uid})")


def memfd_vars() -> None:
    """Each variable named in APACHE_AIRFLOW_MEMFD_VARS: its content into an inheritable memfd, its value
    the fd's /proc/self path."""
    names = [n.strip() for n in os.environ.pop(MEMFD_VARS_ENV, "").split(",") if n.strip()]
    for name in names:
        if name not in os.environ:
            raise ValueError(f"{MEMFD_VARS_ENV} names {name}, which the environment file does not set")
        fd = os.memfd_create(name, 0)  # no MFD_CLOEXEC: the component's children (and an exec) keep it
        data = os.environ[name].encode()
        while data:
            data = data[os.write(fd, data):]
        os.lseek(fd, 0, os.SEEK_SET)
        os.set_inheritable(fd, True)
        os.environ[name] = f"/proc/self/fd/{fd}"


def in_process(command: list[str]) -> bool:
    """A Python program of this venv: its python with -m, or a script of its bin/ run by its python."""
    exe = sys.executable
    if command[0] == exe:
        return len(command) > 2 and command[1] == "-m"
    if os.path.dirname(command[0]) != os.path.dirname(exe):
        return False
    try:
        with open(command[0], "rb") as f:
            first = f.readline(512).strip()
    except OSError:
        return False
    interpreter = first[2:].split(b" ")[0].decode(errors="replace") if first.startswith(b"#!") else ""
    # Python of this very venv (its bin/python or python3): a script another interpreter runs is exec'd.
    return os.path.dirname(interpreter) == os.path.dirname(exe) and os.path.basename(interpreter).startswith("python")


def run_python(command: list[str]) -> None:
    """Run a venv Python program here, as `python -m MOD ARGS` or `python SCRIPT ARGS` would."""
    if os.environ.get("PYTHONUNBUFFERED"):  # read at interpreter start, which is past
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(line_buffering=True, write_through=True)
    if command[0] == sys.executable:
        sys.argv = [command[2], *command[3:]]
        sys.path[0] = os.getcwd()
        runpy.run_module(command[2], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(command)
        sys.path[0] = os.path.dirname(command[0])
        runpy.run_path(command[0], run_name="__main__")


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print("usage: launch.py [--user NAME] -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    command = argv[argv.index("--") + 1:]
    options = argv[:argv.index("--")]
    user = options[options.index("--user") + 1] if "--user" in options[:-1] else None
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
            os.makedirs(pids_dir, mode=0o700, exist_ok=True)
            tmp = f"{record}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"{me[0]} {me[1]}\n")
            os.replace(tmp, record)
    try:
        if user and os.geteuid() == 0:
            drop_to(user)
        os.umask(UMASK)
        memfd_vars()
    except (OSError, KeyError, ValueError) as exc:
        print(f"launch: ERROR could not become {user or 'the component'} ({exc})", file=sys.stderr, flush=True)
        return 1
    if in_process(command):
        run_python(command)
        return 0
    os.execvp(command[0], command)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
