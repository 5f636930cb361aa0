"""`./cli.sh logs`: the component logs supervisord writes (and rotates); `./cli.sh logs search` and `./cli.sh logs task` over task logs."""

from __future__ import annotations

import os
import re
import time
from collections import deque
from pathlib import Path
from typing import Any


from airflow_resource import printer
from airflow_resource.logs import tasklogs
from airflow_resource.errors import EXIT_ALREADY, EXIT_ERROR, AlreadySo, CommandError
from airflow_resource.config.settings import Settings

FOLLOW_POLL_S = 0.3


def _tail(path: Path, n: int) -> list[str]:
    with path.open("r", errors="replace") as f:
        return list(deque(f, maxlen=n))


def available(s: Settings) -> dict[str, Path]:
    found = {p.stem: p for p in sorted(s.component_logs_dir.glob("*.log"))}
    sup = s.logs_dir / "supervisord.log"
    if sup.exists():
        found["supervisord"] = sup
    return found


def show(s: Settings, component: str | None, tail: int, follow: bool) -> int:
    logs = available(s)
    if not logs:
        raise AlreadySo(f"no logs yet in {s.component_logs_dir}", "start the stack: `./cli.sh manage start`")
    if component and component not in logs:
        raise CommandError(f"no log for {component!r}", f"components with logs: {', '.join(logs)}")
    chosen = {component: logs[component]} if component else {k: v for k, v in logs.items() if k != "supervisord"}
    for name, path in chosen.items():
        if len(chosen) > 1:
            printer.info("[bold]==> {} ({}) <==[/]", name, path)
        for line in _tail(path, tail):
            print(line, end="" if line.endswith("\n") else "\n")
    if follow:
        _follow(chosen)
    return 0


def _follow(files: dict[str, Path]) -> None:
    """Print lines appended to the files; reopen a file that supervisord rotated."""
    handles = {}
    for name, path in files.items():
        f = path.open("r", errors="replace")
        f.seek(0, 2)
        handles[name] = (path, f, path.stat().st_ino)
    prefix = len(files) > 1
    try:
        while True:
            for name, (path, f, ino) in list(handles.items()):
                for line in f:
                    print((f"{name} | " if prefix else "") + line, end="", flush=True)
                try:
                    if path.stat().st_ino != ino:  # rotated
                        f.close()
                        nf = path.open("r", errors="replace")
                        handles[name] = (path, nf, path.stat().st_ino)
                except FileNotFoundError:
                    pass
            time.sleep(FOLLOW_POLL_S)
    except KeyboardInterrupt:
        pass


# ---------------------------------------------------------------- logs search

SEARCH_LIMIT = 1000
TI_STATES = ("success", "failed", "running", "queued", "scheduled", "up_for_retry", "up_for_reschedule",
             "upstream_failed", "skipped", "removed", "restarting", "deferred")
TI_PAGE = 100  # the api-server's [api] maximum_page_limit


def compile_pattern(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise CommandError(f"bad regular expression {pattern!r}: {exc}",
                           "PATTERN is a Python regular expression: put a backslash before a special character "
                           "such as ( . * + ? to match it literally") from None


def since_epoch(since: str | None) -> float | None:
    if not since:
        return None
    try:
        return tasklogs.parse_since(since)
    except ValueError as exc:
        raise CommandError(str(exc), "e.g. --since 2h, --since 3d, --since 2026-11-25T08:00") from None


def _known(root: Path, key: str) -> list[str]:
    return sorted(name.split("=", 1)[1] for name in os.listdir(root) if name.startswith(key + "=")) \
        if root.is_dir() else []


def _check_filter_dirs(s: Settings, dag: str | None, run: str | None, task: str | None) -> None:
    """An unknown --dag/--run/--task is a typo more often than a DAG without logs: say which, and what there is."""
    parent: Path | None = s.task_logs_dir
    for key, value in (("dag_id", dag), ("run_id", run), ("task_id", task)):
        if parent is None or value is None:
            parent = None  # a level without a filter: the next one cannot be checked without a walk
            continue
        if not (parent / f"{key}={value}").is_dir():
            what = {"dag_id": "DAG", "run_id": "run", "task_id": "task"}[key]
            known = _known(parent, key)
            raise AlreadySo(f"no task logs for {what} {value!r} in {parent}",
                            f"{what}s with task logs there: {', '.join(known[-10:]) or 'none'}")
        parent = parent / f"{key}={value}"


def _instances_in_state(s: Settings, state: str, dag: str | None, run: str | None, task: str | None,
                        since: float | None) -> set[tuple[str, str, str, int]]:
    """(dag, run, task, map_index) of the task instances now in `state`: one paged REST list query."""
    from airflow_resource.stack import handle
    from airflow_resource.api import AirflowAPI

    if not handle.is_running(s):
        raise CommandError(f"--state needs the running stack (its REST API); it is not running ({s.home})",
                           "start it (`./cli.sh manage start`), or search without --state")
    api = AirflowAPI.for_stack(s)
    body: dict[str, Any] = {"state": [state], "page_limit": TI_PAGE}
    for key, value in (("dag_ids", dag), ("dag_run_ids", run), ("task_ids", task)):
        if value:
            body[key] = [value]
    if since is not None:
        body["end_date_gte"] = tasklogs.iso_utc(since).replace("Z", "+00:00")
    found: set[tuple[str, str, str, int]] = set()
    offset = 0
    while True:
        data = api.post("/dags/~/dagRuns/~/taskInstances/list", {**body, "page_offset": offset})
        batch = data.get("task_instances", [])
        found |= {(t["dag_id"], t["dag_run_id"], t["task_id"], t.get("map_index", -1)) for t in batch}
        offset += len(batch)
        if not batch or offset >= data.get("total_entries", 0):
            return found


def search(s: Settings, pattern: str, *, dag: str | None = None, task: str | None = None, run: str | None = None,
           since: str | None = None, state: str | None = None, components: list[str] | None = None,
           ignore_case: bool = False, limit: int = SEARCH_LIMIT, fmt: str = "text") -> int:
    """`./cli.sh logs search`: task logs (or component logs with --component); exit 0 found, 2 nothing found."""
    rx = compile_pattern(pattern, ignore_case)
    after = since_epoch(since)
    if limit < 1:
        raise CommandError(f"--limit {limit}: must be at least 1")
    started = time.monotonic()
    result: dict[str, Any] = {"pattern": pattern}
    task_filters = [f"--{name}" for name, v in (("dag", dag), ("run", run), ("task", task), ("state", state)) if v]
    if components and task_filters:
        raise CommandError(f"{', '.join(task_filters)} select task logs; --component searches component logs",
                           "search one or the other")
    if components:
        logs = available(s)
        names = list(logs) if "all" in components else components
        unknown = [c for c in names if c not in logs]
        if unknown:
            raise CommandError(f"no log for component(s) {', '.join(map(repr, unknown))}",
                               f"components with logs: {', '.join(logs) or 'none'} (or --component all)")
        found = [m for name in names for m in tasklogs.search_component_log(logs[name], name, rx, after)]
        truncated = len(found) > limit
        result.update(files_searched=len(names), matches=found[:limit], truncated=truncated)
    else:
        if state is not None and state not in TI_STATES:
            raise CommandError(f"--state {state!r} is not a task instance state", f"one of: {', '.join(TI_STATES)}")
        _check_filter_dirs(s, dag, run, task)
        files: Any = tasklogs.find(s.task_logs_dir, dag, run, task, modified_after=after)
        if state is not None:
            wanted = _instances_in_state(s, state, dag, run, task, after)
            files = (f for f in files if (f.dag_id, f.run_id, f.task_id, f.map_index) in wanted)
        matches, searched, truncated = tasklogs.search(files, rx, after, limit)
        result.update(files_searched=searched, matches=[m.to_json() for m in matches], truncated=truncated)
    result["elapsed_s"] = round(time.monotonic() - started, 3)
    if fmt == "json":
        printer.emit_json(result)
    else:
        _print_matches(result, bool(components))
    if truncated:
        printer.warn(f"stopped at {limit} matches; narrow the search (--dag, --run, --task, --since) or raise --limit")
    if not result["matches"]:
        printer.warn(f"no match for {pattern!r} in {result['files_searched']} log file(s)")
        return EXIT_ALREADY
    return 0


def _print_matches(result: dict[str, Any], components: bool) -> None:
    last = None
    for m in result["matches"]:
        if components:
            key = (m["component"], m["file"])
            label = f"{m['component']} ({m['file']})"
        else:
            key = (m["dag_id"], m["run_id"], m["task_id"], m["map_index"], m["try_number"])
            task = m["task_id"] + (f"[{m['map_index']}]" if m["map_index"] >= 0 else "")
            label = f"{m['dag_id']} / {m['run_id']} / {task} / try {m['try_number']}"
        if key != last:
            printer.info("[bold]{}[/]", label)
            last = key
        print(f"  {m['line']:>5}: {m['text']}")
    printer.step(f"{len(result['matches'])} match(es) in {result['files_searched']} log file(s), "
                 f"{result['elapsed_s']:.2f} s")


# ---------------------------------------------------------------- logs task

TASK_POLL_S = 1.0


def _q(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _task_instance(api: Any, dag: str, run: str, task: str, map_index: int) -> dict[str, Any]:
    """The task instance, or an error that says which of DAG, run or task is unknown and what exists."""
    from airflow_resource.api import APIError

    path = f"/dags/{_q(dag)}/dagRuns/{_q(run)}/taskInstances/{_q(task)}" + (f"/{map_index}" if map_index >= 0 else "")
    try:
        return api.get(path)
    except APIError as exc:
        if exc.status != 404:
            raise
    try:
        api.get(f"/dags/{_q(dag)}")
    except APIError:
        known = sorted(d["dag_id"] for d in api.paged("/dags", "dags"))
        raise AlreadySo(f"no DAG named {dag!r}", f"known DAGs: {', '.join(known) or 'none'}") from None
    try:
        api.get(f"/dags/{_q(dag)}/dagRuns/{_q(run)}")
    except APIError:
        runs = api.get(f"/dags/{_q(dag)}/dagRuns", params={"order_by": "-run_after", "limit": 5})["dag_runs"]
        raise AlreadySo(f"DAG {dag} has no run {run!r}",
                        f"latest runs: {', '.join(r['dag_run_id'] for r in runs) or 'none'}") from None
    tis = api.paged(f"/dags/{_q(dag)}/dagRuns/{_q(run)}/taskInstances", "task_instances")
    tasks = sorted({t["task_id"] for t in tis})
    if task in tasks:
        indexes = sorted(t.get("map_index", -1) for t in tis if t["task_id"] == task)
        raise AlreadySo(f"task {task} of run {run} has no map index {map_index}",
                        f"map indexes: {', '.join(map(str, indexes))} (--map-index N)")
    raise AlreadySo(f"run {run} of {dag} has no task {task!r}", f"tasks: {', '.join(tasks) or 'none'}")


def _print_lines(text: str) -> None:
    for line in tasklogs.render_text(text):
        print(line, flush=True)


def task_log(s: Settings, dag: str, run: str, task: str, try_number: int | None, map_index: int,
             follow: bool) -> int:
    """`./cli.sh logs task`: one try's log from the file on disk (the REST API when it is not there), or followed
    while the task runs until it reaches a final state."""
    from airflow_resource.stack import handle
    from airflow_resource.api import AirflowAPI

    root = s.task_logs_dir
    if try_number is not None and try_number < 1:
        raise CommandError(f"--try {try_number}: tries count from 1")
    if not handle.is_running(s):
        if follow:
            raise CommandError(f"--follow needs the running stack ({s.home} is not running)",
                               "start it, or read the finished log without --follow")
        tries = sorted(f.try_number for f in tasklogs.find(root, dag, run, task) if f.map_index == map_index
                       and not f.trigger)
        if not tries:
            _check_filter_dirs(s, dag, run, task)
            raise AlreadySo(f"no log of {dag} / {run} / {task} on disk, and the stack is not running")
        chosen = try_number or tries[-1]
        path = root / tasklogs.relative_path(dag, run, task, chosen, map_index)
        if not path.exists():
            raise AlreadySo(f"no try {chosen} of {dag} / {run} / {task} on disk", f"tries on disk: {tries}")
        _print_lines(tasklogs.read_log(path))
        return 0
    api = AirflowAPI.for_stack(s)
    ti = _task_instance(api, dag, run, task, map_index)
    current = max(1, ti.get("try_number") or 1)
    if try_number is not None and try_number > current:
        raise AlreadySo(f"{task} has had {ti.get('try_number') or 0} tr{'y' if current == 1 else 'ies'}; "
                        f"there is no try {try_number}", f"--try 1..{current}")
    chosen = try_number or current
    if not follow:
        path = root / tasklogs.relative_path(dag, run, task, chosen, map_index)
        if path.exists():
            _print_lines(tasklogs.read_log(path))
            for part in sorted(path.parent.glob(path.name + ".trigger.*.log")):
                printer.info("[bold]--- the part that ran in the triggerer ({}) ---[/]", part.name)
                _print_lines(tasklogs.read_log(part))
        else:  # a worker on another machine, or removed by retention: ask the api-server
            from airflow_resource.dags import runs

            print(runs.task_log(api, dag, run, task, chosen, map_index), flush=True)
        return 0
    return _follow_task(s, api, dag, run, task, map_index, chosen, follow_retries=try_number is None)


def _follow_task(s: Settings, api: Any, dag: str, run: str, task: str, map_index: int, try_number: int,
                 follow_retries: bool) -> int:
    """Print the try's file as it grows; stop once the task instance is final and the file read to its end."""
    root = s.task_logs_dir
    path = root / tasklogs.relative_path(dag, run, task, try_number, map_index)
    pos, pending = 0, ""
    try:
        while True:
            ti = _task_instance(api, dag, run, task, map_index)
            if path.exists():
                with tasklogs.open_log(path) as f:
                    f.seek(pos)
                    chunk = f.read()
                    pos = f.tell()
                *complete, pending = (pending + chunk).split("\n")
                for line in complete:
                    if line:
                        _print_lines(line)
            state = ti.get("state")
            newer = (ti.get("try_number") or 0) > try_number
            if follow_retries and newer:
                if pending:
                    _print_lines(pending)
                try_number = ti["try_number"]
                path, pos, pending = root / tasklogs.relative_path(dag, run, task, try_number, map_index), 0, ""
                printer.info(f"[bold]--- try {try_number} ---[/]")
                continue
            if newer:  # --try N was asked for, and the task has moved on to a later try
                if pending:
                    _print_lines(pending)
                printer.step(f"try {try_number} of {task} ended; it is now on try {ti['try_number']} ({state})")
                return EXIT_ERROR
            if tasklogs.is_final(state):
                if pending:
                    _print_lines(pending)
                printer.step(f"{task} is {state}")
                return 0 if state == "success" else EXIT_ERROR
            time.sleep(TASK_POLL_S)
    except KeyboardInterrupt:
        return 0
