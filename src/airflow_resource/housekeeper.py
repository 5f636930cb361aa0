"""The housekeeper component: delivers failure alerts and enforces log retention, in one small loop.

    python -m airflow_resource.housekeeper --home HOME --task-logs DIR --dag-processor-logs DIR \
        --retention-days N --ui-url URL --heartbeat FILE

Supervised like every component (restarted on a crash; its own log in logs/components/housekeeper.log).
The webhook URL comes from the environment (APACHE_AIRFLOW_ALERT_WEBHOOK_URL, in the component's 0600 env
file), never from the command line. Each pass: deliver the alerts that are due (every POLL_S), run the
retention cleanup at start and every retention.CLEANUP_INTERVAL_S, and touch the heartbeat file that the
status probe reads.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from airflow_resource import alerts, retention

POLL_S = 1.0
HEARTBEAT_S = 10.0


def _log(message: str) -> None:
    print(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), message, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="housekeeper", description=__doc__)
    ap.add_argument("--alerts-dir", required=True)
    ap.add_argument("--task-logs", required=True)
    ap.add_argument("--dag-processor-logs", required=True)
    ap.add_argument("--retention-days", type=int, required=True)
    ap.add_argument("--ui-url", required=True)
    ap.add_argument("--heartbeat", required=True)
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
    _log(f"housekeeper: alerts {'to ' + alerts.redact(url) if url else 'off (no webhook URL)'}; "
         f"log retention {args.retention_days} day(s)" + (" (keep forever)" if args.retention_days <= 0 else ""))
    next_cleanup = next_beat = 0.0
    while not stopping:
        now = time.monotonic()
        if now >= next_beat:
            heartbeat.touch()
            next_beat = now + HEARTBEAT_S
        if url:
            try:
                alerts.deliver_due(spool, url, args.ui_url, task_logs, log=_log)
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
