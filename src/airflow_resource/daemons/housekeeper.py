"""The housekeeper component: delivers failure alerts, enforces log retention and holds the pools while
the disk is nearly full, in one small loop.

    python -m airflow_resource.daemons.housekeeper --alerts-dir DIR --task-logs DIR --dag-processor-logs DIR \
        --retention-days N --ui-url URL --heartbeat FILE [--api-url URL --api-user NAME]

Supervised like every component (restarted on a crash; its own log in logs/components/housekeeper.log).
The webhook URL and the password of its own FAB user (allowed pools and variables only, not the admin) come
from the environment (APACHE_AIRFLOW_ALERT_WEBHOOK_URL, APACHE_AIRFLOW_HOUSEKEEPER_PASSWORD, in the
component's 0600 env file), never from the command line. Each pass:
deliver the alerts that are due (every POLL_S), check the free disk space (every DISK_CHECK_S: below
APACHE_AIRFLOW_DISK_CRITICAL_MB the pools are held at 0 slots, see pool_hold.py), run the retention
cleanup at start and every retention.CLEANUP_INTERVAL_S, and touch the heartbeat file that the status
probe reads.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from airflow_resource.in_airflow import alerts
from airflow_resource.in_airflow import diskspace
from airflow_resource.daemons import alert_delivery
from airflow_resource.daemons import pool_hold
from airflow_resource.daemons import retention
from airflow_resource.config.secrets import Secrets

POLL_S = 1.0
HEARTBEAT_S = 10.0
DISK_CHECK_S = 5.0
# Its own FAB user's password (pools and variables only, standalone/admin_user.py), in its env file.
API_PASSWORD_ENV = Secrets.env_name("housekeeper_password")


def _log(message: str) -> None:
    print(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), message, flush=True)


class DiskGuard:
    """Below the critical free space, hold every pool at 0 slots (no new task starts); above it again,
    give the pools their slots back (pool_hold.py). The wanted state is re-applied until the REST API
    accepts it, and the first check releases a hold an earlier housekeeper left behind."""

    def __init__(self, api_url: str, api_user: str) -> None:
        self.api_url = api_url
        self.api_user = api_user
        self.paths, self.critical_mb = diskspace.from_env()
        self.applied: bool | None = None  # True: pools held, False: released, None: not known yet

    def check(self) -> None:
        if not self.paths or not self.critical_mb or not self.api_url:
            return
        fs = diskspace.critical(self.paths, self.critical_mb)
        hold = fs is not None
        if not hold and self.applied is False:
            return  # while held, each check also holds a pool created since (two small REST reads)
        from airflow_resource.api import AirflowAPI  # requests: only when there is something to do

        try:
            api = AirflowAPI(self.api_url, self.api_user, os.environ.get(API_PASSWORD_ENV, ""), timeout=10)
            if hold:
                n = pool_hold.hold_pools(api)
                if n or not self.applied:
                    _log(f"WARNING {diskspace.refusal(fs, self.critical_mb)} Pools held at 0 slots: {n}")
            else:
                n = pool_hold.release_pools(api)
                if n or self.applied:
                    _log(f"disk space is above {self.critical_mb} MB free again: {n} pool(s) given their slots back")
            self.applied = hold
        except Exception as exc:  # noqa: BLE001 - the API may be starting or down: try again next check
            _log(f"ERROR {'holding' if hold else 'releasing'} the pools for the disk guard: "
                 f"{getattr(exc, 'message', None) or exc}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="housekeeper", description=__doc__)
    ap.add_argument("--alerts-dir", required=True)
    ap.add_argument("--task-logs", required=True)
    ap.add_argument("--dag-processor-logs", required=True)
    ap.add_argument("--retention-days", type=int, required=True)
    ap.add_argument("--ui-url", required=True)
    ap.add_argument("--heartbeat", required=True)
    ap.add_argument("--api-url", default="")
    ap.add_argument("--api-user", default="resource-housekeeper")
    args = ap.parse_args(argv)
    url = os.environ.get(alerts.WEBHOOK_ENV, "")
    spool = Path(args.alerts_dir)
    task_logs = Path(args.task_logs)
    roots = [task_logs, Path(args.dag_processor_logs), spool / alerts.SENT, spool / alerts.FAILED]
    heartbeat = Path(args.heartbeat)
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _log(f"housekeeper: alerts {'to ' + alert_delivery.redact(url) if url else 'off (no webhook URL)'}; "
         f"log retention {args.retention_days} day(s)" + (" (keep forever)" if args.retention_days <= 0 else ""))
    guard = DiskGuard(args.api_url, args.api_user)
    next_cleanup = next_beat = next_disk = 0.0
    while not stopping:
        now = time.monotonic()
        if now >= next_beat:
            try:
                heartbeat.touch()
            except OSError as exc:  # a full disk must not stop the loop that handles a full disk
                _log(f"ERROR touching the heartbeat: {exc}")
            next_beat = now + HEARTBEAT_S
        if now >= next_disk:
            guard.check()
            next_disk = now + DISK_CHECK_S
        if url:
            try:
                alert_delivery.deliver_due(spool, url, args.ui_url, task_logs, log=_log)
            except Exception as exc:  # noqa: BLE001 - one bad pass must not stop the loop
                _log(f"ERROR delivering alerts: {type(exc).__name__}: {exc}")
        if now >= next_cleanup and args.retention_days > 0:
            report = retention.clean(roots, args.retention_days)
            _log(f"log retention ({args.retention_days} d): {report}")
            next_cleanup = now + retention.CLEANUP_INTERVAL_S
        time.sleep(POLL_S)
    _log("housekeeper: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
