"""Free space on the file systems the stack writes to, and what the stack does when it runs short.

- `status` reports every file system holding the home, the logs and the data stores (free MB and %),
  degraded below `disk_warn_percent` free.
- Below `disk_critical_mb` free, new work is held rather than risk a write failing halfway (a task log,
  a WAL segment, an XCom): the api-server refuses new DAG runs (disk_plugin.py, HTTP 507 with this
  module's message) and the housekeeper sets every Airflow pool to 0 slots, so the scheduler starts no
  new task. The pools' own slots are kept in an Airflow Variable and put back by the housekeeper once
  space is above the threshold again: the hold undoes itself, also after a crash of the housekeeper.
Standalone on purpose (the api-server's middleware imports it in every request's path): stdlib only.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import quote

OK, WARNING, CRITICAL = "ok", "warning", "critical"
PATHS_ENV = "APACHE_AIRFLOW_DISK_PATHS"        # os.pathsep-separated folders, for the api-server's middleware
CRITICAL_ENV = "APACHE_AIRFLOW_DISK_CRITICAL_MB"
MB = 2**20
# Requests that create work: trigger a run, a backfill, clear (re-run) tasks or a run, an asset event.
NEW_WORK = re.compile(r"/api/v2/(dags/[^/]+/dagRuns|backfills|dags/[^/]+/clearTaskInstances"
                      r"|dags/[^/]+/dagRuns/[^/]+/clear|assets/events)$")
HOLD_VARIABLE = "apache_airflow_resource_disk_hold"  # {pool: slots} of the pools held at 0
HOLD_DESCRIPTION = ("Pool slots the apache-airflow resource holds at 0 while the disk is nearly full; "
                    "given back, and this variable removed, once space is freed. Do not edit.")


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


def watched_paths(s: Any) -> list[Path]:
    """The folders the stack writes to (Settings s): the home, its logs and its data stores."""
    paths = [s.home, s.logs_dir, s.task_logs_dir]
    if s.embedded_postgres:
        paths.append(s.postgres_dir)
    if s.embedded_redis:
        paths.append(s.redis_dir)
    return paths


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
            "`resource-apache-airflow status` says what to remove.")


def report(s: Any) -> dict[str, Any]:
    """status's disk section: every file system with its level, the worst level, and what to do."""
    systems = measure(watched_paths(s))
    entries = [{**asdict(fs), "free_percent": fs.free_percent, "level": fs.level(s.disk_warn_percent,
                                                                                  s.disk_critical_mb)}
               for fs in systems]
    order = [OK, WARNING, CRITICAL]
    worst = max((e["level"] for e in entries), key=order.index, default=OK)
    out: dict[str, Any] = {"level": worst, "warn_percent": s.disk_warn_percent, "critical_mb": s.disk_critical_mb,
                           "filesystems": entries}
    if worst != OK:
        low = next(e for e in entries if e["level"] == worst)
        out["advice"] = (
            f"free space on the file system of {low['paths'][0]}: old task logs go sooner with a lower "
            f"APACHE_AIRFLOW_LOG_RETENTION_DAYS (now {s.log_retention_days}; the housekeeper applies it hourly), "
            f"old archives in {s.backups_dir} can go, and files pipelines wrote in {s.data_dir}; "
            f"`du -xsh {s.home}/*` shows what is big"
            + (". Below the critical threshold new DAG runs are refused and no new task starts; both resume "
               "by themselves once space is freed" if worst == CRITICAL else ""))
    return out


# ---------------------------------------------------------------- the pool hold (housekeeper)

def hold_pools(api: Any) -> int:
    """Set every open pool to 0 slots, first saving its slots in the Airflow Variable HOLD_VARIABLE (in the
    metadata database, so a restarted housekeeper still knows them). Returns how many were held. The
    scheduler then queues no new task; running ones finish."""
    saved, existed = _held(api)
    pools = [p for p in _pools(api) if p["name"] not in saved and p["slots"] != 0]
    if not pools:
        return 0
    saved.update({p["name"]: p["slots"] for p in pools})
    body = {"key": HOLD_VARIABLE, "value": json.dumps(saved), "description": HOLD_DESCRIPTION}
    if existed:
        api.patch(f"/variables/{HOLD_VARIABLE}", body)
    else:
        api.post("/variables", body)
    for p in pools:
        _set_slots(api, p["name"], 0)
    return len(pools)


def release_pools(api: Any) -> int:
    """Give every held pool its slots back (unless someone changed them meanwhile) and drop the saved
    slots. Returns how many pools were given their slots back."""
    saved, existed = _held(api)
    if not existed:
        return 0
    current = {p["name"]: p["slots"] for p in _pools(api)}
    released = 0
    for name, slots in saved.items():
        if current.get(name) == 0:  # still held: a pool changed by hand meanwhile keeps its new slots
            _set_slots(api, name, slots)
            released += 1
    api.delete(f"/variables/{HOLD_VARIABLE}")
    return released


def _held(api: Any) -> tuple[dict[str, int], bool]:
    from airflow_resource.api import APIError

    try:
        value = api.get(f"/variables/{HOLD_VARIABLE}")["value"]
    except APIError as exc:
        if exc.status == 404:
            return {}, False
        raise
    try:
        saved = json.loads(value)
    except ValueError:
        saved = None
    return (saved if isinstance(saved, dict) else {}), True


def _set_slots(api: Any, name: str, slots: int) -> None:
    # Only `slots` (update_mask): the only field Airflow lets anyone change on default_pool.
    api.patch(f"/pools/{quote(name, safe='')}", {"name": name, "slots": slots}, params={"update_mask": "slots"})


def _pools(api: Any) -> list[dict[str, Any]]:
    return api.paged("/pools", "pools")
