"""Per-worker memory limit: the kernel's, not ours.

Each Celery worker (its main process, its pool and every task process they fork) runs in a memory
cgroup of its own with `worker_memory_limit_mb` as its limit (swap included when the kernel accounts
it). A task that allocates past it is the biggest process there, so the kernel's OOM killer SIGKILLs
it; Airflow's task supervisor, which survives in the worker, logs "Process terminated by signal.
Likely out of memory error (OOM)." in the task's log and fails the try (retried as any failure).
The worker, its other tasks and the rest of the stack go on.

The CLI (root) makes the cgroups under its own memory cgroup (so a service manager's limits and
accounting still hold); the launcher (launch.py) joins the cgroup as root, before it drops to the
service user and runs the worker. Where no memory cgroup is writable (not
root, cgroup v2 without delegation) the launcher sets RLIMIT_DATA instead: each process of the worker,
not the worker as a whole, is held to the limit, and a task past it gets a MemoryError.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from airflow_resource import printer
from airflow_resource import safe_files
from airflow_resource.stack import system
from airflow_resource.standalone.launch import CGROUP_ENV, RLIMIT_ENV  # the launcher joins the cgroup or sets the rlimit
V1_ROOT = Path("/sys/fs/cgroup/memory")
RECORD = "memory-cgroup"                          # <home>/run/memory-cgroup: the stack's cgroup, for stop
MB = 2**20


def own_cgroup(proc_cgroup: str) -> str | None:
    """The memory cgroup (v1) in /proc/<pid>/cgroup's text, e.g. '/system.slice/x.service'."""
    for line in proc_cgroup.splitlines():
        _id, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
    return None


def stack_cgroup(s: Any, root: Path = V1_ROOT) -> Path | None:
    """The stack's cgroup: under the CLI's own memory cgroup, named after the home."""
    try:
        parent = own_cgroup(Path("/proc/self/cgroup").read_text())
    except OSError:
        return None
    if parent is None:
        return None
    tag = hashlib.sha256(str(s.home).encode()).hexdigest()[:10]
    return root / parent.lstrip("/") / f"apache-airflow-{tag}"


def prepare(s: Any, names: list[str], who: system.RunAs, root: Path = V1_ROOT) -> dict[str, dict[str, str]]:
    """The environment that puts each named worker under the limit: a cgroup made ready for it, or
    RLIMIT_DATA with a warning when none can be made. Empty when the limit is off."""
    if not s.worker_memory_limit_mb or not names:
        return {}
    limit = s.worker_memory_limit_mb * MB
    base = _recorded(s) or stack_cgroup(s, root)  # `./cli.sh manage scale` may run from another cgroup than start
    try:
        if base is None or not (root / "memory.limit_in_bytes").exists():
            raise OSError(f"no cgroup v1 memory controller at {root}")
        made = {}
        for name in names:
            path = base / name
            path.mkdir(parents=True, exist_ok=True)
            _set_limit(path, limit)  # the launcher joins it as root, before it drops: no chown needed
            made[name] = {CGROUP_ENV: str(path)}
        safe_files.write_file(s.run_dir / RECORD, f"{base}\n", 0o644)
        return made
    except OSError as exc:
        printer.warn(f"worker memory limit: no writable memory cgroup ({exc}); holding each process of a worker "
                     f"to {s.worker_memory_limit_mb} MB with RLIMIT_DATA instead of the worker as a whole")
        return {name: {RLIMIT_ENV: str(s.worker_memory_limit_mb)} for name in names}


def _recorded(s: Any) -> Path | None:
    """The stack's cgroup as `./cli.sh manage start` made it, while it exists."""
    try:
        base = Path((s.run_dir / RECORD).read_text().strip())
    except OSError:
        return None
    return base if base.is_dir() else None


def _set_limit(path: Path, limit: int) -> None:
    """Memory, and memory + swap where the kernel accounts swap (no escape into swap). The kernel keeps
    memsw >= memory at every step: lift memsw first (a cgroup left by a crash may hold a lower one)."""
    memsw = path / "memory.memsw.limit_in_bytes"
    if memsw.exists():
        memsw.write_text("-1")
    (path / "memory.limit_in_bytes").write_text(str(limit))
    if memsw.exists():
        memsw.write_text(str(limit))


def remove(s: Any) -> None:
    """Remove the stack's (empty, after stop) cgroups; the kernel refuses while a process is in one."""
    base = _recorded(s)
    for child in sorted(base.glob("*/")) if base else []:
        _rmdir(child)  # a cgroup's control files go with it
    if base:
        _rmdir(base)
    (s.run_dir / RECORD).unlink(missing_ok=True)


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def stats(s: Any, pid: int) -> dict[str, int] | None:
    """Memory use, limit and OOM kills (MB, MB, count) of the cgroup a worker runs in; None when it runs
    in none of the stack's."""
    base = _recorded(s)
    try:
        path = V1_ROOT / (own_cgroup(Path(f"/proc/{pid}/cgroup").read_text()) or "").lstrip("/")
        if base is None or path.parent != base:
            return None
        usage = int((path / "memory.usage_in_bytes").read_text()) // MB
        limit = int((path / "memory.limit_in_bytes").read_text()) // MB
        oom = dict(line.split() for line in (path / "memory.oom_control").read_text().splitlines())
    except (OSError, ValueError):
        return None
    return {"memory_mb": usage, "memory_limit_mb": limit, "oom_kills": int(oom.get("oom_kill", 0))}
