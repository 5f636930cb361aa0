"""Airflow listener plugin of the resource: a failed task or DAG run becomes an alert in the spool.

Installed (only while a webhook is configured) as `<plugins>/resource_alerts.py`, which imports this
module, so Airflow loads it in the scheduler, the api-server and every task process (airflow.listeners).
- on_task_instance_failed: the task process calls it when a try fails (also for a try that will be
  retried: only the final failure, state `failed`, makes an alert); the scheduler calls it for a task
  killed from outside; the api-server for a task marked failed by hand.
- on_dag_run_failed: the scheduler, when a run ends failed (also by dagrun_timeout, with no failed task).
A listener must never break what called it: every error is swallowed after a log line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

from airflow_resource.in_airflow import alerts

log = logging.getLogger(__name__)
ERROR_CHARS = 2000


def _value(state: Any) -> str:
    return str(getattr(state, "value", state) or "")


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    try:
        if _value(getattr(task_instance, "state", None)) != "failed":
            return  # up for retry: the next try may succeed
        map_index = getattr(task_instance, "map_index", -1)
        alerts.spool({
            "event": alerts.TASK_FAILED,
            "dag_id": task_instance.dag_id,
            "run_id": task_instance.run_id,
            "task_id": task_instance.task_id,
            "map_index": -1 if map_index is None else int(map_index),
            "try_number": int(getattr(task_instance, "try_number", 0) or 0),
            "max_tries": getattr(task_instance, "max_tries", None),
            "state": "failed",
            "error": (f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error or ""))
            [:ERROR_CHARS],
        })
    except Exception:  # noqa: BLE001 - see the module docstring
        log.exception("apache-airflow resource: could not spool the failure alert")


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    try:
        alerts.spool({"event": alerts.DAG_RUN_FAILED, "dag_id": dag_run.dag_id, "run_id": dag_run.run_id,
                      "state": "failed", "message": str(msg or "")[:ERROR_CHARS]})
    except Exception:  # noqa: BLE001
        log.exception("apache-airflow resource: could not spool the DAG run alert")


class ResourceAlertsPlugin(AirflowPlugin):
    name = "apache_airflow_resource_alerts"
    listeners = [sys.modules[__name__]]
