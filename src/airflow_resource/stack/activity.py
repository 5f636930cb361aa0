"""What the pipelines are doing, for `./cli.sh status --verbose`: broker queue depth, task instances running and
queued, DAG import errors and the last failed tasks. Read in parallel (Redis, then the REST API), so the
verbose status stays near a second; plain `./cli.sh status` does not read any of it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from airflow_resource.api import last_line
from airflow_resource.config import airflow_config
from airflow_resource.config import tls
from airflow_resource.stack import broker
from airflow_resource.stack import probes
from airflow_resource.config.secrets import Secrets
from airflow_resource.config.settings import Settings

COUNTED_STATES = ("running", "queued", "scheduled", "deferred", "up_for_retry")
LAST_FAILURES = 5
IMPORT_ERRORS_SHOWN = 10


def _queue_depth(s: Settings, sec: Secrets) -> dict[str, int]:
    import redis  # installed with Airflow's redis provider

    client = redis.Redis.from_url(airflow_config.redis_url(s, sec), socket_timeout=probes.PROBE_TIMEOUT_S,
                                  socket_connect_timeout=probes.PROBE_TIMEOUT_S)
    try:
        return broker.queue_lengths(client)
    finally:
        client.close()


def _count(api: Any, state: str) -> int:
    return int(api.get("/dags/~/dagRuns/~/taskInstances", params={"state": state, "limit": 1})["total_entries"])


def _import_errors(api: Any) -> dict[str, Any]:
    data = api.get("/importErrors", params={"limit": IMPORT_ERRORS_SHOWN, "order_by": "-timestamp"})
    return {"count": data.get("total_entries", 0),
            "errors": [{"file": e.get("filename"), "timestamp": e.get("timestamp"),
                        "error": last_line(e.get("stack_trace"))} for e in data.get("import_errors", [])]}


def _last_failures(api: Any) -> list[dict[str, Any]]:
    data = api.get("/dags/~/dagRuns/~/taskInstances",
                   params={"state": "failed", "order_by": "-end_date", "limit": LAST_FAILURES})
    return [{"dag_id": t["dag_id"], "run_id": t["dag_run_id"], "task_id": t["task_id"],
             "map_index": t.get("map_index", -1), "try_number": t.get("try_number"), "end_date": t.get("end_date")}
            for t in data.get("task_instances", [])]


def read(s: Settings, sec: Secrets) -> dict[str, Any]:
    """Every figure, each with its own error so that one unreachable source does not hide the others."""
    from airflow_resource.api import AirflowAPI

    ca = tls.ca_file(s)
    api = AirflowAPI(s.api_base, s.admin_user, sec.admin_password, timeout=5, ca_file=str(ca) if ca else None)
    jobs: dict[str, Callable[[], Any]] = {"queue_depth": lambda: _queue_depth(s, sec)}
    jobs.update({f"ti_{state}": (lambda st=state: _count(api, st)) for state in COUNTED_STATES})
    jobs["import_errors"] = lambda: _import_errors(api)
    jobs["last_failures"] = lambda: _last_failures(api)
    try:
        api.token()  # once, before the threads share it
    except Exception as exc:  # noqa: BLE001 - reported, not raised: status still shows the components
        return {"error": f"REST API: {getattr(exc, 'message', exc)}", "queue_depth": _safe(jobs["queue_depth"])[0]}
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = dict(zip(jobs, pool.map(_safe, jobs.values())))
    out: dict[str, Any] = {"queue_depth": results["queue_depth"][0],
                           "task_instances": {st: results[f"ti_{st}"][0] for st in COUNTED_STATES},
                           "import_errors": results["import_errors"][0], "last_failures": results["last_failures"][0]}
    errors = {k: err for k, (_v, err) in results.items() if err}
    if errors:
        out["errors"] = errors
    return out


def _safe(fn: Callable[[], Any]) -> tuple[Any, str | None]:
    try:
        return fn(), None
    except Exception as exc:  # noqa: BLE001
        return None, str(getattr(exc, "message", None) or exc)
