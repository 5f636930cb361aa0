"""Validate DAG files before they go into the dags folder, in an isolated subprocess of the venv's Python.

Three pieces, by where they run. This module (validate, format_problems, the duplicates across files)
runs in the CLI, as does dags/dagcheck_driver.py, which runs the child and holds the hard deadline per
file. The child, standalone/dagcheck_child.py, is piped to the venv's Python on stdin like
admin_user.py, as the service user: it needs only the standard library and Airflow, never this package.
It parses every file with Airflow's own DagBag (airflow.dag_processing.dagbag) with ORM access blocked,
exactly as the dag-processor's parsing subprocess does, and adds what DagBag lacks: line numbers, a kind
per problem, DAG serialization; duplicates across files are computed here, in the parent.

Protocol: the child writes one JSON object per line to its original stdout (user code that prints
goes to stderr instead): ready, files (a directory expanded), start (a file), report, done.
The parent enforces a hard deadline per file on top of Airflow's own [core] dagbag_import_timeout
(SIGALRM, which C code or code that ignores SIGALRM escapes): a child that overruns is killed with
its whole process group, the file is reported as "timeout", and a fresh child validates the rest.

Problem kinds (severity "error" blocks; FileReport.problems holds only those):
  syntax          SyntaxError/IndentationError, at the line of the error (in a helper module too)
  import          any exception while importing the file; line = deepest frame in the DAG file
  timeout         top-level code ran past dagbag_import_timeout, or the child was killed at the hard deadline
  crash           the child died while importing the file (os._exit, segfault)
  cycle           a dependency cycle
  duplicate       a dag_id defined twice in one file, in two of the given files, or already by another file
  invalid         DAG.validate / executor / cluster-policy failures while bagging
  serialization   the DAG imports but cannot be serialized (so the scheduler would never see it)
  runtime_varying Airflow's DAG-version-inflation check at level "error" (values like datetime.now())
Warnings (FileReport.warnings, never block):
  no_dag          the file defines no DAG (a helper module, or a @dag function never called)
  runtime_varying the same check at its default level "warning"
  warning         a Python warning raised from the DAG file's own lines while importing it
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from airflow_resource.dags import dagcheck_driver
from airflow_resource.errors import CommandError
from airflow_resource.standalone.dagcheck_child import ERROR, WARNING  # the child's words, defined there once

HARD_GRACE_S = 5.0  # per file: Airflow's SIGALRM gets timeout_s, the hard kill comes this much later


# ---------------------------------------------------------------- results

@dataclass
class Problem:
    file: str
    line: int | None
    kind: str
    message: str
    severity: str = ERROR
    detail: str = ""  # full traceback or explanation, for --verbose

    def format(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        suffix = " (warning)" if self.severity == WARNING else ""
        return f"{where}: {self.kind}: {self.message}{suffix}"


@dataclass
class FileReport:
    path: str
    dag_ids: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)   # errors: the file must not be placed
    warnings: list[Problem] = field(default_factory=list)   # worth saying, never blocking
    dest: str = ""            # path relative to the dags folder once placed (file name; folder/rel for a folder)
    duration_s: float = 0.0
    dag_lines: dict[str, int | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, p: Problem) -> None:
        (self.warnings if p.severity == WARNING else self.problems).append(p)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def format_problems(reports: list[FileReport], warnings: bool = True) -> str:
    """One line per problem, `file:line: kind: message` (no line: `file: kind: message`)."""
    lines = []
    for r in reports:
        items = sorted(r.problems + (r.warnings if warnings else []),
                       key=lambda p: (p.severity != ERROR, p.file, p.line or 0))
        lines.extend(p.format() for p in items)
    return "\n".join(lines)


# ---------------------------------------------------------------- parent

def validate(paths: list[Path], python: Path, env: dict[str, str], timeout_s: float = 30,
             existing: dict[str, str] | None = None, *, dags_folder: Path | None = None,
             dest_names: list[str] | None = None, user: Any = None) -> list[FileReport]:
    """Validate .py files, folders of them (recursively, honouring .airflowignore) and .zip bundles.

    python: the venv's interpreter (with Airflow). env: the complete environment of the child
    (the stack's Airflow settings, so plugins, connections in env and cluster policies match).
    timeout_s: per file, Airflow's dagbag_import_timeout; the child is killed HARD_GRACE_S later.
    existing: {dag_id: file of the already registered DAG} (absolute, or relative to the dags
    folder, e.g. the REST API's fileloc); a dag_id there is a duplicate unless its file is the
    one being replaced. dags_folder defaults to env's AIRFLOW__CORE__DAGS_FOLDER.
    dest_names: per path, its name once placed in the dags folder (default: its own name), which
    is what "the file being replaced" is judged by.
    user: a system.RunAs to run the child as (only when the caller is root).
    Reports come back in the order of the given paths (a folder's files sorted).
    """
    targets = [Path(p).expanduser().absolute() for p in paths]
    for t in targets:
        if not t.exists():
            raise CommandError(f"{t} does not exist", "pass a .py file, a folder of them or a .zip bundle")
    if dags_folder is None and env.get("AIRFLOW__CORE__DAGS_FOLDER"):
        dags_folder = Path(env["AIRFLOW__CORE__DAGS_FOLDER"])
    sys_path = []
    for t in targets:
        d = str(t if t.is_dir() else t.parent)
        if d not in sys_path:
            sys_path.append(d)
    todo = [dagcheck_driver.Item(str(t), i, expand=t.is_dir()) for i, t in enumerate(targets)]
    reports: dict[tuple[int, str], FileReport] = {}
    order: list[tuple[int, str]] = []

    names = list(dest_names) if dest_names else [t.name for t in targets]
    if len(names) != len(targets):
        raise ValueError("dest_names needs one name per path")

    def dest_of(target: int, file: str) -> str:
        t = targets[target]
        if t.is_dir():
            return (Path(names[target]) / Path(file).relative_to(t)).as_posix()
        return names[target]

    def record(item: dagcheck_driver.Item, msg: dict[str, Any]) -> None:
        rep = FileReport(item.path, dag_ids=msg["dag_ids"], dest=dest_of(item.target, item.path),
                         duration_s=msg["duration_s"], dag_lines=msg["dag_lines"])
        for p in msg["problems"]:
            rep.add(Problem(**p))
        key = (item.target, item.path)
        if key not in reports:
            order.append(key)
        reports[key] = rep

    while todo:  # a fresh child after a file that was killed or crashed
        todo = dagcheck_driver.ChildRun(todo, sys_path, python, env, timeout_s, HARD_GRACE_S, user, record).run()
    result = [reports[k] for k in order]
    _mark_duplicates(result, existing or {}, dags_folder)
    return result


def _existing_dest(path: str, dags_folder: Path | None) -> str | None:
    """Where a registered DAG's file lives, relative to the dags folder (None if elsewhere/unknown)."""
    if not path:
        return None
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    if dags_folder is not None:
        try:
            return p.relative_to(dags_folder).as_posix()
        except ValueError:
            try:
                return p.resolve().relative_to(dags_folder.resolve()).as_posix()
            except (ValueError, OSError):
                return None
    return None


def _covers(dest: str, existing_dest: str) -> bool:
    """A placed file (or zip bundle) at dest is the file existing_dest points at (zip: bundle.zip/inner.py)."""
    return existing_dest == dest or existing_dest.startswith(dest.rstrip("/") + "/")


def _mark_duplicates(reports: list[FileReport], existing: dict[str, str], dags_folder: Path | None) -> None:
    owners: dict[str, list[FileReport]] = {}
    for r in reports:
        for d in dict.fromkeys(r.dag_ids):
            owners.setdefault(d, []).append(r)
    for d, rs in owners.items():
        for r in rs:
            # The same file given twice (itself, and inside a given folder) is not a duplicate of itself.
            others = list(dict.fromkeys(o.path for o in rs if not _same_file(o.path, r.path)))
            if others:
                r.add(Problem(r.path, r.dag_lines.get(d), "duplicate",
                              f"dag_id {d!r} is also defined in {', '.join(others)}"))
    dests = [r.dest for r in reports if r.dest]
    for r in reports:
        for d in dict.fromkeys(r.dag_ids):
            if d not in existing:
                continue
            where = existing[d]
            ex_dest = _existing_dest(where, dags_folder)
            same_path = bool(where) and Path(where).is_absolute() and _same_file(where, r.path)
            replaced = ex_dest is not None and any(_covers(dest, ex_dest) for dest in dests)
            if same_path or replaced:
                continue  # the registered file is the one being replaced (or one of the validated set)
            r.add(Problem(r.path, r.dag_lines.get(d), "duplicate",
                          f"dag_id {d!r} is already defined by {where or 'another file'} in the dags folder"))


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return a == b
