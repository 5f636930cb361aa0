"""Runs through the REST API: execute (with a check of conf against the DAG's params), pause, unpause,
clear, backfill, and a task's log; `./cli.sh content execute` and `./cli.sh dags pause|unpause|clear|backfill`.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from airflow_resource import printer
from airflow_resource.api import AirflowAPI
from airflow_resource.config.settings import Settings
from airflow_resource.dags.restapi import POLL_S, get_dag, latest_run, q, running_api
from airflow_resource.errors import AlreadySo, CommandError
from airflow_resource.logs import tasklogs

FINAL_RUN_STATES = ("success", "failed")
LOG_TAIL_LINES = 60


# ---------------------------------------------------------------- execute

def parse_conf(conf: str | None, params: list[str] | None) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if conf:
        try:
            result = json.loads(conf)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--conf is not JSON: {exc.msg} at column {exc.colno}",
                               "e.g. --conf '{\"rows\": 10}' or --param rows=10") from None
        if not isinstance(result, dict):
            raise CommandError("--conf must be a JSON object", "e.g. --conf '{\"rows\": 10}'")
    for item in params or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CommandError(f"--param {item!r}: expected KEY=VALUE", "e.g. --param rows=10")
        try:
            result[key] = json.loads(raw)
        except json.JSONDecodeError:
            result[key] = raw
    return result


def check_params(declared: dict[str, Any], conf: dict[str, Any]) -> list[str]:
    """Problems of conf against the DAG's params (their JSON schemas), before any run exists."""
    import jsonschema  # installed with Airflow

    problems = []
    for key, spec in declared.items():
        schema = (spec or {}).get("schema") or {}
        value = conf.get(key, (spec or {}).get("value"))
        if key not in conf and value is None and schema and not _allows_null(schema):
            problems.append(f"{key}: required (no default)")
            continue
        if schema:
            try:
                jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())
            except jsonschema.ValidationError as exc:
                problems.append(f"{key}: {exc.message}")
    return problems


def _allows_null(schema: dict[str, Any]) -> bool:
    t = schema.get("type")
    return t is None or t == "null" or (isinstance(t, list) and "null" in t)


def execute(s: Settings, name: str, conf: dict[str, Any], wait: bool, timeout: float) -> int:
    api = running_api(s)
    dag = get_dag(api, name)
    details = api.get(f"/dags/{q(name)}/details")
    problems = check_params(details.get("params") or {}, conf)
    if problems:
        raise CommandError(f"conf for {name} does not match its params:\n  " + "\n  ".join(problems),
                           "no run was created; `./cli.sh content get " + name + "` shows the params")
    unknown = sorted(set(conf) - set(details.get("params") or {}))
    if unknown:
        printer.warn(f"conf keys that are not params of {name}: {', '.join(unknown)}")
    if dag.get("is_paused"):
        api.patch(f"/dags/{q(name)}", {"is_paused": False})
        printer.step(f"unpaused {name}")
    started = time.monotonic()
    run = api.post(f"/dags/{q(name)}/dagRuns", {"logical_date": None, "conf": conf})
    run_id = run["dag_run_id"]
    printer.ok(f"triggered {name} run {run_id}")
    if not wait:
        printer.info(run_id)
        return 0
    state = follow_run(api, name, run_id, timeout, started)
    return 0 if state == "success" else 1


def follow_run(api: AirflowAPI, dag_id: str, run_id: str, timeout: float, started: float) -> str:
    """Print each task's state as it changes; at the end, the failed tasks' logs."""
    seen: dict[str, str] = {}
    base = f"/dags/{q(dag_id)}/dagRuns/{q(run_id)}"
    while True:
        run = api.get(base)
        tis = api.paged(f"{base}/taskInstances", "task_instances")
        for ti in tis:
            key = ti["task_id"] + (f"[{ti['map_index']}]" if ti.get("map_index", -1) >= 0 else "")
            state = ti.get("state") or "none"
            if seen.get(key) != state:
                seen[key] = state
                printer.info(f"  {time.monotonic() - started:6.1f}s  {{:<40}} {_colour(state)}", key)
        if run["state"] in FINAL_RUN_STATES:
            break
        if time.monotonic() - started > timeout:
            raise CommandError(f"run {run_id} still {run['state']} after {timeout:.0f} s",
                               f"it keeps running; follow it in the UI or `./cli.sh content list --filter {dag_id}`")
        time.sleep(POLL_S)
    elapsed = time.monotonic() - started
    if run["state"] == "success":
        printer.ok(f"{dag_id} run succeeded in {elapsed:.1f} s")
    else:
        for ti in tis:
            if ti.get("state") == "failed":
                print_task_log(api, dag_id, run_id, ti)
        printer.error(f"{dag_id} run {run_id} {run['state']} after {elapsed:.1f} s")
    return run["state"]


def _colour(state: str) -> str:
    colour = {"success": "green", "failed": "red", "upstream_failed": "red", "running": "cyan",
              "queued": "yellow", "deferred": "magenta", "up_for_retry": "yellow", "skipped": "dim"}.get(state)
    return f"[{colour}]{state}[/]" if colour else state


def task_log(api: AirflowAPI, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
    params = {"map_index": map_index} if map_index >= 0 else {}
    data = api.get(f"/dags/{q(dag_id)}/dagRuns/{q(run_id)}/taskInstances/{q(task_id)}/logs/{try_number}",
                   params={**params, "full_content": True}, headers={"Accept": "application/json"})
    content = data.get("content")
    lines = []
    for item in content if isinstance(content, list) else [content]:
        if isinstance(item, dict):
            lines += tasklogs.render(item)
        elif item:
            lines.append(str(item))
    return "\n".join(lines)


def print_task_log(api: AirflowAPI, dag_id: str, run_id: str, ti: dict[str, Any]) -> None:
    text = task_log(api, dag_id, run_id, ti["task_id"], max(1, ti.get("try_number") or 1), ti.get("map_index", -1))
    lines = text.splitlines()[-LOG_TAIL_LINES:]
    printer.info("[bold red]--- log of failed task {} (try {}) ---[/]", ti["task_id"], ti.get("try_number"))
    print("\n".join(lines))


# ---------------------------------------------------------------- pause / clear / backfill

def set_paused(s: Settings, name: str, paused: bool) -> int:
    api = running_api(s)
    dag = get_dag(api, name)
    if dag.get("is_paused") == paused:
        raise AlreadySo(f"{name} is already {'paused' if paused else 'unpaused'}")
    api.patch(f"/dags/{q(name)}", {"is_paused": paused})
    printer.ok(f"{name} {'paused' if paused else 'unpaused'}")
    return 0


def clear(s: Settings, name: str, run_id: str | None, all_tasks: bool, wait: bool, timeout: float) -> int:
    """Clear (re-run) the failed tasks of a run: the latest one unless --run is given."""
    api = running_api(s)
    get_dag(api, name)
    if run_id is None:
        latest = latest_run(api, name)
        if latest is None:
            raise CommandError(f"{name} has no runs to clear", f"run it: `./cli.sh content execute {name}`", exit_code=2)
        run_id = latest["dag_run_id"]
    body = {"dry_run": False, "only_failed": not all_tasks, "dag_run_id": run_id, "reset_dag_runs": True}
    started = time.monotonic()
    cleared = api.post(f"/dags/{q(name)}/clearTaskInstances", body)
    tasks = [ti["task_id"] for ti in (cleared or {}).get("task_instances", [])]
    if not tasks:
        raise AlreadySo(f"nothing to clear in {run_id}: no {'failed ' if not all_tasks else ''}task instances")
    printer.ok(f"cleared {len(tasks)} task(s) of {run_id}: {', '.join(sorted(set(tasks)))}")
    if wait:
        return 0 if follow_run(api, name, run_id, timeout, started) == "success" else 1
    return 0


def backfill(s: Settings, name: str, start: str, end: str, reprocess: str, wait: bool, timeout: float) -> int:
    api = running_api(s)
    dag = get_dag(api, name)
    if not dag.get("timetable_summary") or dag.get("timetable_summary") in ("None", "null"):
        raise CommandError(f"{name} has no schedule: there is nothing to backfill",
                           f"trigger it instead: `./cli.sh content execute {name}`", exit_code=2)
    body = {"dag_id": name, "from_date": _iso(start), "to_date": _iso(end), "reprocess_behavior": reprocess,
            "run_backwards": False, "dag_run_conf": {}, "max_active_runs": 4}
    if dag.get("is_paused"):
        # The scheduler queues no task of a paused DAG, backfill runs included.
        api.patch(f"/dags/{q(name)}", {"is_paused": False})
        printer.step(f"unpaused {name} (its scheduled runs resume too)")
    started = time.monotonic()
    bf = api.post("/backfills", body)
    printer.ok(f"backfill {bf['id']} of {name} from {start} to {end} created")
    if not wait:
        return 0
    while True:
        bf = api.get(f"/backfills/{bf['id']}")
        runs = [r for r in api.paged(f"/dags/{q(name)}/dagRuns", "dag_runs", {"run_type": "backfill"})
                if body["from_date"] <= (r.get("logical_date") or "")[:10] <= body["to_date"]]
        if bf.get("completed_at") and all(r["state"] in FINAL_RUN_STATES for r in runs):
            break
        if time.monotonic() - started > timeout:
            raise CommandError(f"backfill {bf['id']} not finished after {timeout:.0f} s",
                               "it keeps running; see the DAG's runs in the UI")
        time.sleep(POLL_S * 2)
    failed = [r["dag_run_id"] for r in runs if r["state"] != "success"]
    printer.info(f"{len(runs)} run(s): {len(runs) - len(failed)} succeeded, {len(failed)} failed")
    return 0 if not failed else 1


def _iso(day: str) -> str:
    try:
        return datetime.fromisoformat(day).date().isoformat()
    except ValueError:
        raise CommandError(f"{day!r} is not a date", "use YYYY-MM-DD") from None
