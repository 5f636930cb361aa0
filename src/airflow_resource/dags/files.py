"""The dags folder: add (validated, atomic), list, get, remove; `./cli.sh content add|list|get|remove`.

Files go into the dags folder only after they import cleanly in an isolated subprocess (dags/dagcheck.py);
what the stack registered is read through its REST API with a real token.
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

from airflow_resource import printer
from airflow_resource import safe_files
from airflow_resource.access import teams
from airflow_resource.api import AirflowAPI, APIError, last_line
from airflow_resource.config.settings import Settings
from airflow_resource.dags.restapi import POLL_S, get_dag, latest_run, q, running_api
from airflow_resource.errors import AlreadySo, CommandError
from airflow_resource.stack import handle
from airflow_resource.stack import system

REGISTER_TIMEOUT_S = 120  # a loaded 2-core machine can take a minute to parse a new file
DAG_SUFFIXES = (".py", ".zip")


# ---------------------------------------------------------------- add

def _destination(s: Settings, source: Path, name: str | None, folder: Path | None = None) -> Path:
    if source.is_dir():
        target = name or source.name
    else:
        target = name or source.name
        if source.suffix in DAG_SUFFIXES and not target.endswith(source.suffix):
            target += source.suffix
    if "/" in target or target.startswith("."):
        raise CommandError(f"--name {target!r} must be a plain file or folder name", "e.g. --name my_pipeline.py")
    return (folder or s.dags_dir) / target


def _registered(api: AirflowAPI) -> dict[str, str]:
    return {d["dag_id"]: d.get("fileloc") or "" for d in api.paged("/dags", "dags")}


def add(s: Settings, file: Path, name: str | None, force: bool, wait: bool, timeout: float,
        team: str | None = None) -> list[str]:
    from airflow_resource.dags import dagcheck

    source = file.expanduser().absolute()
    if not source.exists():
        raise CommandError(f"{source} does not exist", "pass the path of a .py file, a folder or a .zip bundle")
    if source.is_file() and source.suffix not in DAG_SUFFIXES:
        raise CommandError(f"{source.name} is not a DAG file", "pass a .py file, a folder of them or a .zip bundle")
    dest = _destination(s, source, name, teams.existing_folder(s, team) if team else None)
    if dest.exists() and not force:
        raise AlreadySo(f"{dest.name} already exists in {dest.parent}", "add --force to replace it")

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
        if team:  # its DAGs join the team's role
            teams.sync(s)
    elif team:
        printer.info(f"team {team} reaches its new DAG(s) after `./cli.sh teams sync`, once they are parsed")
    elif wait:
        printer.info("the stack is not running: the DAG(s) register when it starts")
    for d in dag_ids:
        printer.info(d)
    return dag_ids


def _same_place(fileloc: str, dest: Path) -> bool:
    return bool(fileloc) and (fileloc == str(dest) or fileloc.startswith(str(dest) + os.sep))


@contextlib.contextmanager
def _staged(s: Settings, who: system.RunAs, source: Path, dest: Path) -> Iterator[Path]:
    """A copy of the source beside the dags folder, root's and readable by the service group (the DAG check
    runs as the service user), so the bytes validated are the bytes placed; removed afterwards."""
    gid = who.gid if system.is_root() else -1
    staging_root = s.run_dir / "staging"
    safe_files.ensure_dir(staging_root, 0o750, os.geteuid(), gid)
    staging = Path(tempfile.mkdtemp(dir=staging_root))
    try:
        safe_files.set_owner(staging, os.geteuid(), gid, 0o750)
        tmp = staging / dest.name
        if source.is_dir():
            shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, tmp)
        for path in [tmp, *tmp.rglob("*")] if tmp.is_dir() else [tmp]:
            safe_files.set_owner(path, os.geteuid(), gid, 0o750 if path.is_dir() else 0o640)
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
                    dag = api.get(f"/dags/{q(d)}")
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

def list_dags(s: Settings, text_filter: str | None) -> dict[str, Any]:
    api = running_api(s)
    params = {"dag_id_pattern": text_filter} if text_filter else {}
    dags = api.paged("/dags", "dags", params)
    with ThreadPoolExecutor(max_workers=8) as pool:
        latest = list(pool.map(lambda d: latest_run(api, d["dag_id"]), dags))
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
        printer.info("[red]import error[/] {}: {}", e["file"], e["error"])
    return 0


def _short_time(value: str | None) -> str:
    if not value:
        return "-"
    return value.replace("T", " ")[:19]


def get(s: Settings, name: str, output: Path | None) -> int:
    api = running_api(s)
    dag = get_dag(api, name)
    source = api.request("GET", f"/dagSources/{q(name)}", headers={"Accept": "text/plain"}).text
    try:
        source = json.loads(source)["content"]
    except (ValueError, KeyError, TypeError):
        pass
    details = api.get(f"/dags/{q(name)}/details")
    if output:
        output.write_text(source)
        printer.ok(f"wrote {output}")
    else:
        printer.info("[bold]{}[/]  file {}  paused {}  schedule {}  tags {}", name, details.get("fileloc"),
                     details.get("is_paused"), details.get("timetable_summary") or "-",
                     ", ".join(t["name"] for t in dag.get("tags", [])))
        params = details.get("params") or {}
        if params:
            printer.info("params: " + ", ".join(f"{k}={v.get('value')!r}" for k, v in params.items()))
        print(source)
    return 0


# ---------------------------------------------------------------- remove

def remove(s: Settings, name: str, force: bool, purge: bool) -> int:
    api = running_api(s)
    dag = get_dag(api, name)
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
        api.patch(f"/dags/{q(name)}", {"is_paused": True})
        api.delete(f"/dags/{q(name)}")
        printer.ok(f"deleted {name} and its history from the metadata database")
    else:
        api.patch(f"/dags/{q(name)}", {"is_paused": True})
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
    if len(rel.parts) > 2 and rel.parts[0] == teams.TEAMS_DIR:  # a team's folder: the entry within it
        return s.dags_dir.joinpath(*rel.parts[:3])
    return s.dags_dir / rel.parts[0]
