"""Scheduled backups: a supervised loop that writes an archive every interval and keeps the newest N.

It is the stack's `./cli.sh backup` component (only when backup_interval_minutes > 0), so supervisord restarts
it when it dies and it starts and stops with the stack. The next backup is due one interval after the
newest scheduled archive in <home>/backups, so a restart neither skips one nor takes one twice. Its
state goes to run/backup-schedule.json, which `./cli.sh status` reads as the component's health. It
runs as root, like `backup create` (the launcher does not drop): its archives hold the metadata
database and every secret, so they and <home>/backups are root's alone, out of every task's reach. The
running stack's settings reach it in its environment.

    python -m airflow_resource.daemons.backup_schedule --home HOME
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_resource import safe_files
from airflow_resource.backup import archive
from airflow_resource.backup import create as backup
from airflow_resource.config import secrets
from airflow_resource.config import settings
from airflow_resource.stack import system
from airflow_resource.errors import CommandError
from airflow_resource.config.settings import Settings

RETRY_S = 300  # after a failure, try again this soon (or after one interval, when shorter)
TICK_S = 5


def next_due(newest: float | None, interval_s: float, now: float, retry_at: float | None = None) -> float:
    """Now when no scheduled archive exists, else one interval after the newest; never before a retry time."""
    due = now if newest is None else max(now, newest + interval_s)
    return max(due, retry_at) if retry_at else due


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def write_report(path: Path, report: dict[str, Any]) -> None:
    safe_files.write_file(path, json.dumps(report, indent=1) + "\n", 0o640)


def run_once(s: Settings, sec: secrets.Secrets) -> dict[str, Any]:
    """One scheduled backup and the pruning after it."""
    # The start put the passphrase in this component's env file (read as root); the file is the fallback.
    passphrase = archive.read_passphrase(None, os.environ, configured=s.backup_passphrase_file)
    started = time.monotonic()
    dest, manifest = backup.create(s, sec, system.current_user(), running=True, passphrase=passphrase,
                                   kind=backup.SCHEDULED)
    removed = backup.prune(s.backups_dir, s.backup_keep)
    return {"file": dest.name, "at": manifest["created"], "size": dest.stat().st_size,
            "seconds": round(time.monotonic() - started, 1), "secrets": manifest["contents"]["secrets"],
            "pruned": [p.name for p in removed]}


def loop(s: Settings, sec: secrets.Secrets) -> None:
    interval = s.backup_interval_minutes * 60
    report: dict[str, Any] = {"pid": os.getpid(), "started": _iso(time.time()), "interval_s": interval,
                              "keep": s.backup_keep, "last_ok": None, "last_error": None}
    retry_at = None
    while True:
        archives = backup.scheduled_archives(s.backups_dir)
        due = next_due(archives[-1][0] if archives else None, interval, time.time(), retry_at)
        report["next_due"] = _iso(due)
        write_report(s.backup_status_file, report)
        while (left := due - time.time()) > 0:
            time.sleep(min(TICK_S, left))
        try:
            report["last_ok"] = run_once(s, sec)
            report["last_error"] = retry_at = None
            print(f"backup {report['last_ok']['file']} written ({report['last_ok']['size']} bytes, "
                  f"{report['last_ok']['seconds']} s); pruned {report['last_ok']['pruned'] or 'none'}", flush=True)
        except Exception as exc:  # noqa: BLE001 - reported in status, retried; the loop must not die
            report["last_error"] = exc.message if isinstance(exc, CommandError) else f"{type(exc).__name__}: {exc}"
            report["last_error_at"] = _iso(time.time())
            retry_at = time.time() + min(RETRY_S, interval)
            print(f"ERROR backup failed: {report['last_error']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="airflow_resource.daemons.backup_schedule")
    parser.add_argument("--home", required=True)
    args = parser.parse_args(argv)
    # TERM from supervisord: unwind, so a backup in progress removes its temporary files.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # The running stack's settings come with the environment: the effective file is root's, private.
    try:
        s = settings.from_json(json.loads(os.environ.pop(settings.SETTINGS_ENV)))
    except (KeyError, ValueError, TypeError) as exc:
        print(f"ERROR the backup schedule needs the running stack's settings in {settings.SETTINGS_ENV} ({exc}); "
              "`./cli.sh manage restart` writes its environment anew", flush=True)
        return 1
    sec = secrets.from_mapping(os.environ)
    if sec is None or not s.backup_interval_minutes:
        print("ERROR the backup schedule needs the stack's secrets in its environment and an interval", flush=True)
        return 1
    loop(s, sec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
