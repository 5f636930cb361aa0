"""Free space on the file systems the stack writes to, and what the stack does when it runs short.

- `./cli.sh status` reports every file system holding the home, the logs and the data stores (free MB and %),
  degraded below `disk_warn_percent` free (stack/disk.py, from the Settings).
- Below `disk_critical_mb` free, new work is held rather than risk a write failing halfway (a task log,
  a WAL segment, an XCom): the api-server refuses new DAG runs (disk_plugin.py, HTTP 507 with this
  module's message) and the housekeeper sets every Airflow pool to 0 slots (daemons/pool_hold.py), so
  the scheduler starts no new task; both give way by themselves once space is above the threshold again.
This part is what those processes share: the measuring, the levels, the threshold from the environment.
Stdlib only: the api-server's middleware imports it in every request's path (in_airflow/__init__.py).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

OK, WARNING, CRITICAL = "ok", "warning", "critical"
PATHS_ENV = "APACHE_AIRFLOW_DISK_PATHS"        # os.pathsep-separated folders, for the api-server's middleware
CRITICAL_ENV = "APACHE_AIRFLOW_DISK_CRITICAL_MB"
MB = 2**20
# Requests that create work: trigger a run, a backfill, clear (re-run) tasks or a run, an asset event.
NEW_WORK = re.compile(r"/api/v2/(dags/[^/]+/dagRuns|backfills|dags/[^/]+/clearTaskInstances"
                      r"|dags/[^/]+/dagRuns/[^/]+/clear|assets/events)$")


@dataclass(frozen=True)
class FileSystem:
    paths: tuple[str, ...]  # the stack's folders on it
    total_mb: int
    free_mb: int            # available to the unprivileged service user (statvfs f_bavail)

    @property
    def free_percent(self) -> float:
        return round(100.0 * self.free_mb / self.total_mb, 1) if self.total_mb else 0.0

    def level(self, warn_percent: int, critical_mb: int) -> str:
        if critical_mb and self.free_mb < critical_mb:
            return CRITICAL
        if warn_percent and 100 * self.free_mb < warn_percent * self.total_mb:  # exact, not the rounded figure
            return WARNING
        return OK


def _existing(path: Path) -> Path:
    """The path, or its nearest existing parent (a folder not created yet is on its parent's file system)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def measure(paths: Iterable[Path], statvfs: Callable[[str], Any] = os.statvfs) -> list[FileSystem]:
    """One entry per file system (by device) holding any of the paths, in the order first seen."""
    found: dict[int, tuple[list[str], Any]] = {}
    for path in paths:
        real = _existing(Path(path))
        try:
            dev = real.stat().st_dev
            if dev not in found:
                found[dev] = ([], statvfs(str(real)))
        except OSError:
            continue
        found[dev][0].append(str(path))
    return [FileSystem(tuple(p), st.f_blocks * st.f_frsize // MB, st.f_bavail * st.f_frsize // MB)
            for p, st in found.values()]


def from_env() -> tuple[list[Path], int]:
    """The folders and threshold the disk guard's processes (api-server, housekeeper) were given."""
    paths = [Path(p) for p in os.environ.get(PATHS_ENV, "").split(os.pathsep) if p]
    return paths, int(os.environ.get(CRITICAL_ENV) or 0)


def critical(paths: Iterable[Path], critical_mb: int) -> FileSystem | None:
    """The first file system below the critical threshold, if any (the middleware's check: microseconds)."""
    if not critical_mb:
        return None
    return next((fs for fs in measure(paths) if fs.free_mb < critical_mb), None)


def refusal(fs: FileSystem, critical_mb: int) -> str:
    return (f"disk nearly full: {fs.paths[0]} has {fs.free_mb} MB free (the stack holds new work below "
            f"{critical_mb} MB); new DAG runs are refused and no new task starts until space is freed. "
            "`./cli.sh status` says what to remove.")
