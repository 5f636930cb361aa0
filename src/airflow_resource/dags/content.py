"""DAG content: add (validated, atomic), list, get, remove, execute; pause, clear, backfill.

Everything that touches the running stack goes through its REST API with a real token;
files go into the dags folder only after they import cleanly in an isolated subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

from airflow_resource import printer
from airflow_resource.stack import handle
from airflow_resource.stack import system
from airflow_resource.logs import tasklogs
from airflow_resource.api import AirflowAPI, APIError
from airflow_resource.errors import AlreadySo, CommandError
from airflow_resource.config.settings import Settings

REGISTER_TIMEOUT_S = 120  # a loaded 2-core machine can take a minute to parse a new file
POLL_S = 0.5
FINAL_RUN_STATES = ("success", "failed")
LOG_TAIL_LINES = 60
DAG_SUFFIXES = (".py", ".zip")


def _q(value: str) -> str:
    return quote(value, safe="")


def _api(s: Settings) -> AirflowAPI:
    if not handle.is_running(s):
        raise CommandError(f"the stack is not running ({s.home})", "start it: ./cli.sh manage start")
    return AirflowAPI.for_stack(s)


def _dag(api: AirflowAPI, dag_id: str) -> dict[str, Any]:
    try:
        return api.get(f"/dags/{_q(dag_id)}")
    except APIError as exc:
        if exc.status == 404:
            known = sorted(d["dag_id"] for d in api.paged("/dags", "dags"))
            raise CommandError(f"no DAG named {dag_id!r}", f"known DAGs: {', '.join(known) or 'none'}",
                               exit_code=2) from None
        raise


# ---------------------------------------------------------------- add

def _destination(s: Settings, source: Path, name: str | None) -> Path:
    if source.is_dir():
        target = name or source.name
    else:
        target = name or source.name
        if source.suffix in DAG_SUFFIXES and not target.endswith(source.suffix):
            target += source.suffix
    if "/" in target or target.startswith("."):
        raise CommandError(f"--name {target!r} must be a plain file or folder name", "e.g. --name my_pipeline.py")
    return s.dags_dir / target


def _registered(api: AirflowAPI) -> dict[str, str]:
    return {d["dag_id"]: d.get("fileloc") or "" for d in api.paged("/dags", "dags")}


def add(s: Settings, file: Path, name: str | None, force: bool, wait: bool, timeout: float) -> list[str]:
    from airflow_resource.dags import dagcheck

    source = file.expanduser().absolute()
    if not source.exists():
        raise CommandError(f"{source} does not exist", "pass the path of a .py file, a folder or a .zip bundle")
    if source.is_file() and source.suffix not in DAG_SUFFIXES:
        raise CommandError(f"{source.name} is not a DAG file", "pass a .py file, a folder of them or a .zip bundle")
    dest = _destination(s, source, name)
    if dest.exists() and not force:
        raise AlreadySo(f"{dest.name} already exists in {s.dags_dir}", "add --force to replace it")

    running = handle.is_running(s)
    api = AirflowAPI.for_stack(s) if running else None
    st = handle.Stack.load(s)
    existing = _registered(api) if api else {}
    # A replaced file's own DAGs are not duplicates of themselves.
    existing = {d: f for d, f in existing.items() if not _same_place(f, dest)}
    printer.step(f"validating {source} in an isolated subprocess")
    started = time.monotonic()
    # Validate a staged copy the service user can read (the source may be in a private folder);
    # the very bytes validated are the ones renamed into the dags folder.
    with _staged(s, st.who, source, dest) as staged:
        reports = dagcheck.validate([staged], s.venv / "bin" / "python", st.env(), existing=existing,
                                    dags_folder=s.dags_dir, dest_names=[dest.name], user=st.who)
        for r in reports:
            for p in r.problems + r.warnings:
                p.file = p.file.replace(str(staged), str(source))
        problems = [p for r in reports for p in r.problems]
        if problems or any(r.warnings for r in reports):
            printer.err.print(dagcheck.format_problems(reports), markup=False, highlight=False)
        if problems:
            raise CommandError(f"{source.name} was not added: {len(problems)} problem(s)",
                               f"fix them and run the command again; {s.dags_dir} is unchanged")
        dag_ids = sorted({d for r in reports for d in r.dag_ids})
        printer.ok(f"valid: {', '.join(dag_ids)} ({time.monotonic() - started:.1f} s)")
        placed_at = datetime.now(timezone.utc)
        _commit(staged, dest)
    printer.ok(f"placed {dest}")
    if wait and api:
        _wait_registered(api, dag_ids, placed_at, timeout)
    elif wait:
        printer.info("the stack is not running: the DAG(s) register when it starts")
    for d in dag_ids:
        printer.info(d)
    return dag_ids


def _same_place(fileloc: str, dest: Path) -> bool:
    return bool(fileloc) and (fileloc == str(dest) or fileloc.startswith(str(dest) + os.sep))


@contextlib.contextmanager
def _staged(s: Settings, who: system.RunAs, source: Path, dest: Path) -> Iterator[Path]:
    """A copy of the source beside the dags folder, owned by the service user; removed afterwards."""
    staging_root = s.run_dir / "staging"
    system.make_dir(staging_root, who)
    staging = Path(tempfile.mkdtemp(dir=staging_root))
    try:
        system.chown(staging, who)
        staging.chmod(0o755)
        tmp = staging / dest.name
        if source.is_dir():
            shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, tmp)
        for path in [tmp, *tmp.rglob("*")] if tmp.is_dir() else [tmp]:
            system.chown(path, who)
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield tmp
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _commit(staged: Path, dest: Path) -> None:
    """Rename into the dags folder: the DAG processor never sees half a file."""
    if dest.is_dir() and not dest.is_symlink():
        os.replace(dest, staged.parent / (dest.name + ".old"))  # old folder out, new one in: two renames
    os.replace(staged, dest)


def _wait_registered(api: AirflowAPI, dag_ids: list[str], placed_at: datetime, timeout: float) -> None:
    pending = set(dag_ids)
    started = time.monotonic()
    with printer.status("waiting for the DAG processor to register it") as spinner:
        while pending:
            for d in list(pending):
                try:
                    dag = api.get(f"/dags/{_q(d)}")
                except APIError as exc:
                    if exc.status != 404:
                        raise
                    continue
                parsed = dag.get("last_parsed_time")
                if parsed and datetime.fromisoformat(parsed) >= placed_at.replace(microsecond=0):
                    printer.ok(f"registered {d} ({time.monotonic() - started:.1f} s)")
                    pending.discard(d)
            if not pending:
                return
            if time.monotonic() - started > timeout:
                raise CommandError(f"not registered within {timeout:.0f} s: {', '.join(sorted(pending))}",
                                   "see `./cli.sh content list` for import errors and `./cli.sh logs dag-processor`")
            spinner.update(f"waiting for the DAG processor: {', '.join(sorted(pending))}")
            time.sleep(POLL_S)


# ---------------------------------------------------------------- list / get

def _latest_run(api: AirflowAPI, dag_id: str) -> dict[str, Any] | None:
    runs = api.get(f"/dags/{_q(dag_id)}/dagRuns", params={"limit": 1, "order_by": "-run_after"})["dag_runs"]
    return runs[0] if runs else None


def list_dags(s: Settings, text_filter: str | None) -> dict[str, Any]:
    api = _api(s)
    params = {"dag_id_pattern": text_filter} if text_filter else {}
    dags = api.paged("/dags", "dags", params)
    with ThreadPoolExecutor(max_workers=8) as pool:
        latest = list(pool.map(lambda d: _latest_run(api, d["dag_id"]), dags))
    errors = api.paged("/importErrors", "import_errors")
    if text_filter:
        errors = [e for e in errors if text_filter in e.get("filename", "")]
    out = []
    for d, run in zip(dags, latest):
        out.append({
            "dag_id": d["dag_id"],
            "file": d.get("relative_fileloc") or d.get("fileloc"),
            "paused": d.get("is_paused"),
            "schedule": d.get("timetable_summary") or d.get("timetable_description"),
            "last_run_state": run["state"] if run else None,
            "last_run_at": (run.get("end_date") or run.get("start_date") or run.get("run_after")) if run else None,
            "next_run": d.get("next_dagrun_run_after") or d.get("next_dagrun_logical_date"),
            "tags": [t["name"] for t in d.get("tags", [])],
        })
    return {"dags": out, "import_errors": [
        {"file": e.get("filename"), "error": last_line(e.get("stack_trace")), "stack_trace": e.get("stack_trace")}
        for e in errors]}


def last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


def show_list(s: Settings, fmt: str, text_filter: str | None) -> int:
    data = list_dags(s, text_filter)
    if fmt == "json":
        printer.emit_json(data)
        return 0
    if fmt == "yaml":
        import yaml

        print(yaml.safe_dump(data, sort_keys=False))
        return 0
    rows = [[d["dag_id"], d["file"], "yes" if d["paused"] else "no", d["schedule"] or "-",
             d["last_run_state"] or "-", _short_time(d["last_run_at"]), _short_time(d["next_run"])]
            for d in data["dags"]]
    printer.table(["dag_id", "file", "paused", "schedule", "last run", "when", "next run"], rows,
                  title=f"{len(rows)} DAG(s) in {s.dags_dir}")
    for e in data["import_errors"]:
        printer.info(f"[red]import error[/] {e['file']}: {e['error']}")
    return 0


def _short_time(value: str | None) -> str:
    if not value:
        return "-"
    return value.replace("T", " ")[:19]


def get(s: Settings, name: str, output: Path | None) -> int:
    api = _api(s)
    dag = _dag(api, name)
    source = api.request("GET", f"/dagSources/{_q(name)}", headers={"Accept": "text/plain"}).text
    try:
        source = json.loads(source)["content"]
    except (ValueError, KeyError, TypeError):
        pass
    details = api.get(f"/dags/{_q(name)}/details")
    if output:
        output.write_text(source)
        printer.ok(f"wrote {output}")
    else:
        printer.info(f"[bold]{name}[/]  file {details.get('fileloc')}  paused {details.get('is_paused')}  "
                     f"schedule {details.get('timetable_summary') or '-'}  tags {', '.join(t['name'] for t in dag.get('tags', []))}")
        params = details.get("params") or {}
        if params:
            printer.info("params: " + ", ".join(f"{k}={v.get('value')!r}" for k, v in params.items()))
        print(source)
    return 0


# ---------------------------------------------------------------- remove

def remove(s: Settings, name: str, force: bool, purge: bool) -> int:
    api = _api(s)
    dag = _dag(api, name)
    fileloc = Path(dag.get("fileloc") or "")
    target = _file_in_dags_dir(s, fileloc)
    if target is not None and target.exists():
        others = [d["dag_id"] for d in api.paged("/dags", "dags")
                  if d["dag_id"] != name and _same_place(d.get("fileloc") or "", target)]
        if others and not force:
            raise CommandError(f"{target.name} also defines {', '.join(others)}",
                               "add --force to remove the file and all its DAGs")
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
        printer.ok(f"removed {target}")
    else:
        printer.warn(f"{fileloc} is not in {s.dags_dir}: left in place")
    if purge:
        api.patch(f"/dags/{_q(name)}", {"is_paused": True})
        api.delete(f"/dags/{_q(name)}")
        printer.ok(f"deleted {name} and its history from the metadata database")
    else:
        api.patch(f"/dags/{_q(name)}", {"is_paused": True})
        printer.ok(f"{name} paused; its run history is kept (--purge deletes it)")
    return 0


def _file_in_dags_dir(s: Settings, fileloc: Path) -> Path | None:
    """The top-level entry of the dags folder holding fileloc (a file, a folder, or a zip)."""
    try:
        rel = fileloc.relative_to(s.dags_dir)
    except ValueError:
        for parent in fileloc.parents:  # inside a zip bundle: <dags>/bundle.zip/dag.py
            if parent.suffix == ".zip":
                return _file_in_dags_dir(s, parent)
        return None
    return s.dags_dir / rel.parts[0]


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
    api = _api(s)
    dag = _dag(api, name)
    details = api.get(f"/dags/{_q(name)}/details")
    problems = check_params(details.get("params") or {}, conf)
    if problems:
        raise CommandError(f"conf for {name} does not match its params:\n  " + "\n  ".join(problems),
                           "no run was created; `./cli.sh content get " + name + "` shows the params")
    unknown = sorted(set(conf) - set(details.get("params") or {}))
    if unknown:
        printer.warn(f"conf keys that are not params of {name}: {', '.join(unknown)}")
    if dag.get("is_paused"):
        api.patch(f"/dags/{_q(name)}", {"is_paused": False})
        printer.step(f"unpaused {name}")
    started = time.monotonic()
    run = api.post(f"/dags/{_q(name)}/dagRuns", {"logical_date": None, "conf": conf})
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
    base = f"/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}"
    while True:
        run = api.get(base)
        tis = api.paged(f"{base}/taskInstances", "task_instances")
        for ti in tis:
            key = ti["task_id"] + (f"[{ti['map_index']}]" if ti.get("map_index", -1) >= 0 else "")
            state = ti.get("state") or "none"
            if seen.get(key) != state:
                seen[key] = state
                printer.info(f"  {time.monotonic() - started:6.1f}s  {key:<40} {_colour(state)}")
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
    data = api.get(f"/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}/logs/{try_number}",
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
    printer.info(f"[bold red]--- log of failed task {ti['task_id']} (try {ti.get('try_number')}) ---[/]")
    print("\n".join(lines))


# ---------------------------------------------------------------- pause / clear / backfill

def set_paused(s: Settings, name: str, paused: bool) -> int:
    api = _api(s)
    dag = _dag(api, name)
    if dag.get("is_paused") == paused:
        raise AlreadySo(f"{name} is already {'paused' if paused else 'unpaused'}")
    api.patch(f"/dags/{_q(name)}", {"is_paused": paused})
    printer.ok(f"{name} {'paused' if paused else 'unpaused'}")
    return 0


def clear(s: Settings, name: str, run_id: str | None, all_tasks: bool, wait: bool, timeout: float) -> int:
    """Clear (re-run) the failed tasks of a run: the latest one unless --run is given."""
    api = _api(s)
    _dag(api, name)
    if run_id is None:
        latest = _latest_run(api, name)
        if latest is None:
            raise CommandError(f"{name} has no runs to clear", f"run it: ./cli.sh content execute {name}", exit_code=2)
        run_id = latest["dag_run_id"]
    body = {"dry_run": False, "only_failed": not all_tasks, "dag_run_id": run_id, "reset_dag_runs": True}
    started = time.monotonic()
    cleared = api.post(f"/dags/{_q(name)}/clearTaskInstances", body)
    tasks = [ti["task_id"] for ti in (cleared or {}).get("task_instances", [])]
    if not tasks:
        raise AlreadySo(f"nothing to clear in {run_id}: no {'failed ' if not all_tasks else ''}task instances")
    printer.ok(f"cleared {len(tasks)} task(s) of {run_id}: {', '.join(sorted(set(tasks)))}")
    if wait:
        return 0 if follow_run(api, name, run_id, timeout, started) == "success" else 1
    return 0


def backfill(s: Settings, name: str, start: str, end: str, reprocess: str, wait: bool, timeout: float) -> int:
    api = _api(s)
    dag = _dag(api, name)
    if not dag.get("timetable_summary") or dag.get("timetable_summary") in ("None", "null"):
        raise CommandError(f"{name} has no schedule: there is nothing to backfill",
                           f"trigger it instead: ./cli.sh content execute {name}", exit_code=2)
    body = {"dag_id": name, "from_date": _iso(start), "to_date": _iso(end), "reprocess_behavior": reprocess,
            "run_backwards": False, "dag_run_conf": {}, "max_active_runs": 4}
    if dag.get("is_paused"):
        # The scheduler queues no task of a paused DAG, backfill runs included.
        api.patch(f"/dags/{_q(name)}", {"is_paused": False})
        printer.step(f"unpaused {name} (its scheduled runs resume too)")
    started = time.monotonic()
    bf = api.post("/backfills", body)
    printer.ok(f"backfill {bf['id']} of {name} from {start} to {end} created")
    if not wait:
        return 0
    while True:
        bf = api.get(f"/backfills/{bf['id']}")
        runs = [r for r in api.paged(f"/dags/{_q(name)}/dagRuns", "dag_runs", {"run_type": "backfill"})
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
