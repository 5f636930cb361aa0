"""The running stack's REST API as the DAG commands use it: the stack must be running, a DAG is named by its id."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow_resource.api import AirflowAPI, APIError
from airflow_resource.config.settings import Settings
from airflow_resource.errors import CommandError
from airflow_resource.stack import handle

POLL_S = 0.5


def q(value: str) -> str:
    """One path segment of a URL (a dag_id or run_id may hold any character)."""
    return quote(value, safe="")


def running_api(s: Settings) -> AirflowAPI:
    if not handle.is_running(s):
        raise CommandError(f"the stack is not running ({s.home})", "start it: `./cli.sh manage start`")
    return AirflowAPI.for_stack(s)


def get_dag(api: AirflowAPI, dag_id: str) -> dict[str, Any]:
    try:
        return api.get(f"/dags/{q(dag_id)}")
    except APIError as exc:
        if exc.status == 404:
            known = sorted(d["dag_id"] for d in api.paged("/dags", "dags"))
            raise CommandError(f"no DAG named {dag_id!r}", f"known DAGs: {', '.join(known) or 'none'}",
                               exit_code=2) from None
        raise


def latest_run(api: AirflowAPI, dag_id: str) -> dict[str, Any] | None:
    runs = api.get(f"/dags/{q(dag_id)}/dagRuns", params={"limit": 1, "order_by": "-run_after"})["dag_runs"]
    return runs[0] if runs else None
