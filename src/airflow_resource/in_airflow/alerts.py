"""Failure alerts: Airflow's processes spool them here; the housekeeper POSTs them (daemons/alert_delivery.py).

Flow: the listener plugin (alert_plugin.py, in the scheduler, the api-server and every task process) and
the Deadline Alert callback `deadline_missed` (run by the triggerer) write one JSON record per event into
`<home>/alerts/outbox/` (write, then rename: never half a file). The housekeeper picks each record up
once it has settled, adds the log excerpt and the UI link, POSTs it with retries, and moves it to `sent/`
or, given up, to `failed/`. Records survive restarts, so nothing is lost while the receiver or the stack
is down. The file name is the event's identity (event, dag, run, task, map index, try), so the two places
that report one failure (the task process and, for a task killed from outside, the scheduler) make one
alert.

Stdlib only: this module is imported by the listener in every task process and by the triggerer. The
delivery (HTTP, the task log reader) is in daemons/alert_delivery.py so that none of it is loaded there.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SPOOL_ENV = "APACHE_AIRFLOW_ALERT_SPOOL"      # set for Airflow's processes when a webhook is configured
WEBHOOK_ENV = "APACHE_AIRFLOW_ALERT_WEBHOOK_URL"  # the housekeeper's only; named beside SPOOL_ENV
OUTBOX, SENT, FAILED = "outbox", "sent", "failed"
TASK_FAILED, DAG_RUN_FAILED, DEADLINE_MISSED = "task_failed", "dag_run_failed", "deadline_missed"


# ---------------------------------------------------------------- writing (in Airflow's processes)

def _key(record: dict[str, Any]) -> str:
    ident = json.dumps([record.get(k) for k in ("event", "dag_id", "run_id", "task_id", "map_index", "try_number",
                                                "deadline_id")])
    return hashlib.sha256(ident.encode()).hexdigest()[:24]


def spool(record: dict[str, Any], spool_dir: str | None = None) -> Path | None:
    """Queue one alert (atomically; once per event identity). No spool configured: nothing to do."""
    spool_dir = spool_dir or os.environ.get(SPOOL_ENV)
    if not spool_dir:
        return None
    outbox = Path(spool_dir) / OUTBOX
    outbox.mkdir(parents=True, exist_ok=True)
    record = {**record, "occurred_at": record.get("occurred_at") or _now_iso(), "hostname": socket.gethostname()}
    name = f"{record['event']}-{_key(record)}.json"
    final = outbox / name
    if final.exists() or (Path(spool_dir) / SENT / name).exists():
        return final
    tmp = outbox / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"record": record, "attempts": 0, "next_try": 0.0, "spooled_at": time.time()}))
    os.replace(tmp, final)
    return final


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"  # milliseconds


async def deadline_missed(context: dict[str, Any] | None = None, **kwargs: Any) -> str:
    """Deadline Alert callback (Airflow 3's DeadlineAlert with AsyncCallback, run by the triggerer):

        from airflow.sdk import DAG, DeadlineAlert, DeadlineReference, AsyncCallback
        DAG(..., deadline=DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT,
                                        interval=timedelta(minutes=30),
                                        callback=AsyncCallback("airflow_resource.alerts.deadline_missed")))
    """
    context = context or {}
    run = context.get("dag_run") or {}
    deadline = context.get("deadline") or {}
    spool({"event": DEADLINE_MISSED, "dag_id": run.get("dag_id"), "run_id": run.get("dag_run_id") or run.get("run_id"),
           "state": run.get("state"), "deadline_id": str(deadline.get("id") or ""),
           "deadline_time": str(deadline.get("deadline_time") or ""), "queued_at": run.get("queued_at"),
           "start_date": run.get("start_date"), **({"extra": kwargs} if kwargs else {})})
    return "spooled"
