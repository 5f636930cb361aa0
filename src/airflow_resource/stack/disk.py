"""status's disk section and the folders the disk guard watches, from the resolved Settings.

The measuring and the levels are in in_airflow/diskspace.py (stdlib only, shared with the api-server's
middleware and the housekeeper); what needs the Settings, which in_airflow may not import, is here:
status, start's low-space warning and components.disk_env use it.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from airflow_resource.config.settings import Settings
from airflow_resource.in_airflow import diskspace
from airflow_resource.in_airflow.diskspace import CRITICAL, OK, WARNING


def watched_paths(s: Settings) -> list[Path]:
    """The folders the stack writes to: the home, its logs and its data stores."""
    paths = [s.home, s.logs_dir, s.task_logs_dir]
    if s.embedded_postgres:
        paths.append(s.postgres_dir)
    if s.embedded_redis:
        paths.append(s.redis_dir)
    return paths


def report(s: Settings) -> dict[str, Any]:
    """status's disk section: every file system with its level, the worst level, and what to do."""
    # diskspace.measure through the module, not imported by name: tests replace it there.
    systems = diskspace.measure(watched_paths(s))
    entries = [{**asdict(fs), "free_percent": fs.free_percent, "level": fs.level(s.disk_warn_percent,
                                                                                  s.disk_critical_mb)}
               for fs in systems]
    order = [OK, WARNING, CRITICAL]
    worst = max((e["level"] for e in entries), key=order.index, default=OK)
    out: dict[str, Any] = {"level": worst, "warn_percent": s.disk_warn_percent, "critical_mb": s.disk_critical_mb,
                           "filesystems": entries}
    if worst != OK:
        low = next(e for e in entries if e["level"] == worst)
        out["advice"] = advice(s, low["paths"][0], worst)
    return out


def advice(s: Settings, path: str, level: str) -> str:
    """What to remove to free space on the file system of `path` (at `level`: warning or critical)."""
    return (f"free space on the file system of {path}: old task logs go sooner with a lower "
            f"APACHE_AIRFLOW_LOG_RETENTION_DAYS (now {s.log_retention_days}; the housekeeper applies it hourly), "
            f"old archives in {s.backups_dir} can go, and files pipelines wrote in {s.data_dir}; "
            f"`du -xsh {s.home}/*` shows what is big"
            + (". Below the critical threshold new DAG runs are refused and no new task starts; both resume "
               "by themselves once space is freed" if level == CRITICAL else ""))
