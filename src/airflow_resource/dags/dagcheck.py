"""Validate DAG files before they go into the dags folder, in an isolated subprocess of the venv's Python.

The parent half (validate, format_problems) runs in the CLI. The child half (_child_*) is this same
file piped to the venv's Python on stdin, like admin_user.py: it needs only the standard library
and Airflow, never this package. The child parses every file with Airflow's own DagBag
(airflow.dag_processing.dagbag) with ORM access blocked, exactly as the dag-processor's parsing
subprocess does, and adds what DagBag lacks: line numbers, a kind per problem, DAG serialization
and duplicates across files (those are computed here, in the parent).

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

import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STARTUP_TIMEOUT_S = 120.0  # importing Airflow in the child (~3 s warm; far more on a cold disk)
HARD_GRACE_S = 5.0         # per file: Airflow's SIGALRM gets timeout_s, the hard kill comes this much later
BETWEEN_FILES_TIMEOUT_S = 60.0  # listing a directory, bookkeeping between files
STDERR_TAIL_BYTES = 4000
PROTO_PREFIX = "@@dagcheck@@ "

ERROR = "error"
WARNING = "warning"


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

@dataclass
class _Item:
    path: str
    target: int
    expand: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "target": self.target, "expand": self.expand}


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
    from airflow_resource.errors import CommandError

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
    todo = [_Item(str(t), i, expand=t.is_dir()) for i, t in enumerate(targets)]
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

    while todo:
        todo = _run_child(todo, sys_path, python, env, timeout_s, user, reports, order, dest_of)
    result = [reports[k] for k in order]
    _mark_duplicates(result, existing or {}, dags_folder)
    return result


def _child_env(env: dict[str, str], timeout_s: float) -> dict[str, str]:
    return {
        **env,
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": str(float(timeout_s)),
        # Full tracebacks: the line in the DAG file may be deep under library frames.
        "AIRFLOW__CORE__DAGBAG_IMPORT_ERROR_TRACEBACKS": "True",
        "AIRFLOW__CORE__DAGBAG_IMPORT_ERROR_TRACEBACK_DEPTH": "50",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",  # validation must leave no __pycache__ next to the user's files
    }


def _run_child(todo: list[_Item], sys_path: list[str], python: Path, env: dict[str, str], timeout_s: float,
               user: Any, reports: dict[tuple[int, str], FileReport], order: list[tuple[int, str]],
               dest_of: Any) -> list[_Item]:
    """One child over the work list; returns what is left to do (after a killed or crashed file)."""
    import selectors
    import signal
    import subprocess
    import tempfile

    from airflow_resource.errors import CommandError

    request = {"items": [i.to_json() for i in todo], "sys_path": sys_path}
    source = Path(__file__).read_text()
    kw: dict[str, Any] = {}
    if user is not None and os.geteuid() == 0 and user.uid != 0:
        kw = {"user": user.uid, "group": user.gid, "extra_groups": []}
    home = env.get("AIRFLOW_HOME")
    cwd = home if home and os.path.isdir(home) else "/"
    errfile = tempfile.TemporaryFile()
    proc = subprocess.Popen([str(python), "-", json.dumps(request)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=errfile, env=_child_env(env, timeout_s), cwd=cwd,
                            start_new_session=True, **kw)
    todo = list(todo)
    current: _Item | None = None
    started = 0.0
    ready = done = False
    buf = b""

    def stderr_tail() -> str:
        errfile.seek(0, os.SEEK_END)
        errfile.seek(max(0, errfile.tell() - STDERR_TAIL_BYTES))
        return errfile.read().decode(errors="replace").strip()

    def kill() -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()

    def finish(item: _Item, kind: str, message: str, detail: str = "", line: int | None = None,
               file: str | None = None) -> None:
        """A file whose child did not report: record it, drop it from the work list."""
        key = (item.target, item.path)
        if key not in reports:
            order.append(key)
        rep = FileReport(item.path, dest=dest_of(item.target, item.path),
                         duration_s=round(time.monotonic() - started, 3))
        rep.add(Problem(file or item.path, line, kind, message, detail=detail))
        reports[key] = rep
        todo.remove(item)

    try:
        try:
            assert proc.stdin is not None
            proc.stdin.write(source.encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        eof = False
        while not done and not eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if current is None:
                    kill()
                    what = "starting (importing Airflow)" if not ready else "listing files"
                    raise CommandError(f"the validation subprocess hung while {what}; killed it",
                                       f"its last output: {stderr_tail()[-800:] or '(none)'}")
                limit = timeout_s + HARD_GRACE_S
                file, line = _where_hung(proc.pid, current.path, stderr_tail)
                kill()
                why = ("Airflow does not time .zip bundles" if current.path.endswith(".zip") else
                       f"it escaped Airflow's {timeout_s:g} s dagbag_import_timeout: SIGALRM ignored or a long call in C")
                at = f"; line {line} was running" if line else ""
                finish(current, "timeout", f"top-level code still running after {limit:g} s, killed ({why}){at}",
                       line=line, file=file)
                return todo
            if not sel.select(timeout=remaining):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                eof = True
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode(errors="replace")
                if not line.startswith(PROTO_PREFIX):
                    continue
                msg = json.loads(line[len(PROTO_PREFIX):])
                event = msg["event"]
                now = time.monotonic()
                if event == "ready":
                    ready = True
                    deadline = now + BETWEEN_FILES_TIMEOUT_S
                elif event == "files":
                    i = next(n for n, it in enumerate(todo) if it.expand and it.target == msg["target"])
                    todo[i:i + 1] = [_Item(f, msg["target"]) for f in msg["files"]]
                    deadline = now + BETWEEN_FILES_TIMEOUT_S
                elif event == "start":
                    current = next(it for it in todo if not it.expand and it.target == msg["target"]
                                   and it.path == msg["file"])
                    started = now
                    deadline = now + timeout_s + HARD_GRACE_S
                elif event == "report":
                    item = next(it for it in todo if not it.expand and it.target == msg["target"]
                                and it.path == msg["file"])
                    rep = FileReport(item.path, dag_ids=msg["dag_ids"], dest=dest_of(item.target, item.path),
                                     duration_s=msg["duration_s"], dag_lines=msg["dag_lines"])
                    for p in msg["problems"]:
                        rep.add(Problem(**p))
                    key = (item.target, item.path)
                    if key not in reports:
                        order.append(key)
                    reports[key] = rep
                    todo.remove(item)
                    current = None
                    deadline = now + BETWEEN_FILES_TIMEOUT_S
                elif event == "fatal":
                    kill()
                    raise CommandError(f"the validation subprocess failed: {msg['message']}",
                                       f"is {python} the venv with Airflow? {stderr_tail()[-800:]}")
                elif event == "done":
                    done = True
        if done:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            if todo:  # cannot happen unless parent and child disagree; never loop on it
                raise CommandError(f"the validation subprocess skipped {len(todo)} file(s): {todo[0].path} ...",
                                   "please report this as a bug of the resource")
            return todo
        # EOF without "done": the child died.
        kill()
        tail = stderr_tail()
        if current is not None:
            finish(current, "crash", f"the interpreter died while importing this file (exit {proc.returncode})",
                   tail[-STDERR_TAIL_BYTES:])
            return todo
        raise CommandError(f"the validation subprocess exited with {proc.returncode} before validating anything",
                           f"is {python} the venv with Airflow? Its output: {tail[-800:] or '(none)'}")
    finally:
        # Whatever the DAG files started at top level dies with the child's process group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if proc.poll() is None:
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        errfile.close()


def _where_hung(pid: int, path: str, stderr_tail: Any) -> tuple[str, int | None]:
    """Ask the hung child where it is (faulthandler on SIGUSR1 dumps its stack to stderr, even in C)."""
    import signal

    try:
        os.kill(pid, signal.SIGUSR1)
    except (ProcessLookupError, PermissionError):
        return path, None
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        time.sleep(0.05)
        text = stderr_tail()
        dump = text[text.rfind("(most recent call first)"):] if "(most recent call first)" in text else ""
        if dump:
            # Most recent call first: the first frame in the DAG file (or inside the zip) is the one running.
            for m in re.finditer(r'File "([^"]+)", line (\d+)', dump):
                if m.group(1) == path or m.group(1).startswith(path.rstrip("/") + "/"):
                    return m.group(1), int(m.group(2))
            return path, None
    return path, None


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


# ---------------------------------------------------------------- child (runs in the venv, stdlib + Airflow)

def _child_first_line(text: str) -> str:
    for line in str(text).strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def _child_exc_message(exc: BaseException) -> str:
    first = _child_first_line(str(exc))
    name = type(exc).__name__
    return f"{name}: {first}" if first else name


def _child_line_in(tb_frames: list[Any], files: set[str]) -> int | None:
    """The line of the deepest traceback frame inside the DAG file."""
    line = None
    for fr in tb_frames:
        if os.path.abspath(fr.filename) in files:
            line = fr.lineno
    return line


def _child_dag_lines(path: str, dag_ids: list[str]) -> dict[str, int | None]:
    """Best effort: the line where each dag_id is written (a string literal, else a @dag function's def)."""
    try:
        lines = open(path, encoding="utf-8", errors="replace").read().splitlines() if path.endswith(".py") else []
    except OSError:
        lines = []
    found: dict[str, int | None] = {}
    for d in dag_ids:
        pats = [re.compile(r"""(['"])""" + re.escape(d) + r"\1"), re.compile(r"def\s+" + re.escape(d) + r"\s*\(")]
        found[d] = None
        for pat in pats:
            for n, text in enumerate(lines, 1):
                if pat.search(text):
                    found[d] = n
                    break
            if found[d]:
                break
    return found


def _child_classify_import(exc: BaseException, path: str, tb_text: str, timeout_s: float) -> dict[str, Any]:
    import traceback

    files = {os.path.abspath(path)}
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    line = _child_line_in(frames, files)
    if isinstance(exc, SyntaxError):
        where = exc.filename or path
        msg = f"{type(exc).__name__}: {exc.msg}"
        if os.path.abspath(where) not in files:
            msg += f" (in {where}, imported at line {line})" if line else f" (in {where})"
        text = (exc.text or "").rstrip("\n")
        return {"file": where, "line": exc.lineno, "kind": "syntax", "message": msg,
                "detail": f"{where}:{exc.lineno}: {text.strip()}" if text else tb_text}
    if type(exc).__name__ == "AirflowTaskTimeout":
        at = f"; it was running line {line}" if line else ""
        return {"file": path, "line": line, "kind": "timeout",
                "message": f"top-level code took longer than {timeout_s:g} s (dagbag_import_timeout){at}",
                "detail": tb_text}
    msg = _child_exc_message(exc)
    if isinstance(exc, ImportError) and getattr(exc, "name", None):
        msg = f"{type(exc).__name__}: {_child_first_line(str(exc))}"
    if "VARIABLE_NOT_FOUND" in msg or "CONNECTION_NOT_FOUND" in msg:
        msg += (" (validation never reads the metadata database: a Variable or Connection stored there is "
                "unknown here; give Variable.get a default, or read it inside a task)")
    if isinstance(exc, SystemExit):
        msg = f"SystemExit({exc.code!r}): the file calls sys.exit() at import"
    return {"file": path, "line": line, "kind": "import", "message": msg, "detail": tb_text}


def _child_classify_text(path: str, text: str, timeout_s: float) -> dict[str, Any]:
    """An import error we have no exception object for: read file/line from Airflow's traceback text."""
    line = None
    for m in re.finditer(r'File "([^"]+)", line (\d+)', text):
        if os.path.abspath(m.group(1)) == os.path.abspath(path):
            line = int(m.group(2))
    last = [ln for ln in text.strip().splitlines() if ln.strip()]
    message = last[-1].strip() if last else "import failed"
    kind = "import"
    if message.startswith(("SyntaxError", "IndentationError", "TabError")):
        kind = "syntax"
    elif "AirflowTaskTimeout" in message or "DagBag import timeout" in text:
        kind = "timeout"
        message = f"top-level code took longer than {timeout_s:g} s (dagbag_import_timeout)"
    return {"file": path, "line": line, "kind": kind, "message": message, "detail": text}


def _child_bag_kind(exc: BaseException) -> str:
    names = {c.__name__ for c in type(exc).__mro__}
    if "AirflowDagCycleException" in names:
        return "cycle"
    if "AirflowDagDuplicatedIdException" in names:
        return "duplicate"
    return "invalid"


def _child_check_file(path: str, safe_mode: bool, timeout_s: float, captured: list[Any]) -> dict[str, Any]:
    import collections
    import logging
    import traceback
    import zipfile

    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.file import might_contain_dag

    problems: list[dict[str, Any]] = []

    def add(file: str, line: int | None, kind: str, message: str, severity: str = ERROR, detail: str = "") -> None:
        problems.append({"file": file, "line": line, "kind": kind, "message": message,
                         "severity": severity, "detail": detail})

    is_zip = zipfile.is_zipfile(path)
    if not (path.endswith(".py") or is_zip):
        add(path, None, "no_dag", "not a .py file or a .zip bundle: Airflow ignores it", WARNING)
        return {"dag_ids": [], "problems": problems, "dag_lines": {}}
    if not is_zip and not might_contain_dag(path, safe_mode):
        add(path, None, "no_dag", "Airflow skips this file: it does not mention both 'airflow' and 'dag' "
            "([core] dag_discovery_safe_mode)", WARNING)
        return {"dag_ids": [], "problems": problems, "dag_lines": {}}

    # Airflow's DAG-version-inflation check (datetime.now() and friends in DAG/task arguments).
    if not is_zip:
        try:
            from airflow.utils.dag_version_inflation_checker import check_dag_file_stability

            stab = check_dag_file_stability(path)
            level = getattr(stab.check_level, "value", str(stab.check_level))
            for w in stab.warnings.values():
                add(path, w.line, "runtime_varying", f"{w.message}: {w.code}",
                    ERROR if level == "error" else WARNING)
        except Exception:  # an optional check: never fail validation on it
            pass

    if not is_zip:
        # As the dag-processor does ([dag_processor] parsing_pre_import_modules): Airflow's own modules are
        # imported before the timed import, so the timeout measures the file's code, not Airflow's.
        try:
            import importlib

            from airflow.utils.file import iter_airflow_imports

            for module in iter_airflow_imports(path):
                try:
                    importlib.import_module(module)
                except Exception:
                    pass  # the timed import reports it
        except Exception:
            pass

    bag = DagBag(dag_folder=path, collect_dags=False, load_op_links=False)
    bag_log = logging.getLogger("airflow_resource.dags.dagcheck.bag")
    bag._log = bag_log  # DagBag logs through structlog; a stdlib logger lets us keep the exception objects
    bag_dag = bag.bag_dag

    def bag_dag_noting_id(dag: Any) -> None:
        try:
            bag_dag(dag)
        except Exception as exc:
            exc._dagcheck_dag_id = dag.dag_id  # type: ignore[attr-defined]
            raise

    bag.bag_dag = bag_dag_noting_id  # type: ignore[method-assign]
    captured.clear()
    found = bag.process_file(path, only_if_updated=False, safe_mode=safe_mode)

    import_exc: dict[str, BaseException] = {}
    bag_excs: list[BaseException] = []
    seen: set[int] = set()
    for rec in captured:
        exc = rec.exc_info[1] if rec.exc_info else None
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        if rec.name == bag_log.name:
            bag_excs.append(exc)
        elif rec.args:
            import_exc[os.path.abspath(str(rec.args[0]))] = exc

    # DagBag keeps one text per file; bagging errors (cycle, validate, policy) overwrite an import error's.
    bag_texts = {f"{type(e).__name__}: {e}" for e in bag_excs}
    for err_path, text in bag.import_errors.items():
        err_abs = os.path.abspath(err_path)
        exc = import_exc.pop(err_abs, None)
        if exc is not None:
            files_path = err_abs if is_zip else path
            problems.append({**_child_classify_import(exc, files_path, text, timeout_s), "severity": ERROR})
        elif text not in bag_texts:
            problems.append({**_child_classify_text(err_abs, text, timeout_s), "severity": ERROR})
    for exc in bag_excs:
        kind = _child_bag_kind(exc)
        frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
        line = _child_line_in(frames, {os.path.abspath(path)})
        faulty = re.search(r"Faulty task: (\S+)", str(exc)) if kind == "cycle" else None
        if line is None and faulty:
            line = _child_dag_lines(path, [faulty.group(1)]).get(faulty.group(1))
        if line is None and getattr(exc, "_dagcheck_dag_id", None):
            line = _child_dag_lines(path, [exc._dagcheck_dag_id]).get(exc._dagcheck_dag_id)
        add(path, line, kind, _child_exc_message(exc),
            detail="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))

    dag_ids = [d.dag_id for d in found]
    dag_lines = _child_dag_lines(path, dag_ids)
    for d, n in collections.Counter(dag_ids).items():
        if n > 1:
            add(path, dag_lines.get(d), "duplicate",
                f"dag_id {d!r} is defined {n} times in this file; Airflow keeps only one of them")

    # The scheduler only ever sees serialized DAGs: a DAG that cannot be serialized never appears.
    try:
        from airflow.serialization.serialized_objects import DagSerialization as _Ser
    except ImportError:  # older Airflow 3
        from airflow.serialization.serialized_objects import SerializedDAG as _Ser
    for d in found:
        try:
            _Ser.to_dict(d)
        except Exception as exc:
            add(path, dag_lines.get(d.dag_id), "serialization", f"DAG {d.dag_id!r}: {_child_exc_message(exc)}",
                detail=traceback.format_exc())

    for w in bag.captured_warnings.get(path, ()):
        m = re.match(r"(.+?):(\d+): ([\w.]+): (.*)", w, re.S)
        if m and os.path.abspath(m.group(1)) == os.path.abspath(path):
            add(path, int(m.group(2)), "warning", f"{m.group(3)}: {_child_first_line(m.group(4))}", WARNING)

    if not found and not any(p["severity"] == ERROR for p in problems):
        add(path, None, "no_dag", "defines no DAG: a helper module, or a @dag-decorated function that is never "
            "called, or a DAG object that is not reachable at module level", WARNING)
    return {"dag_ids": sorted(set(dag_ids)), "problems": problems, "dag_lines": dag_lines}


def _child_main() -> int:
    import logging

    request = json.loads(sys.argv[1])
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever DAG files print goes to stderr; stdout carries only the protocol

    def emit(**msg: Any) -> None:
        proto.write(PROTO_PREFIX + json.dumps(msg) + "\n")
        proto.flush()

    try:
        import airflow
        from airflow.configuration import conf
        from airflow.dag_processing.importers import get_importer_registry
    except Exception as exc:
        emit(event="fatal", message=f"cannot import Airflow: {exc!r}")
        return 1
    # As the dag-processor's parsing child does: user code runs client-side, with no ORM access.
    os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "client"
    try:
        from airflow.sdk.execution_time.supervisor import block_orm_access

        block_orm_access()
    except ImportError:
        pass
    for d in request["sys_path"]:
        if d not in sys.path:
            sys.path.append(d)
    dags_folder = conf.get("core", "dags_folder", fallback="")
    if dags_folder and dags_folder not in sys.path:
        sys.path.append(dags_folder)

    captured: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info and (record.name.startswith("airflow.dag_processing")
                                    or record.name == "airflow_resource.dags.dagcheck.bag"):
                captured.append(record)

    handler = Capture(level=logging.ERROR)
    logging.getLogger().addHandler(handler)
    for name in ("airflow.dag_processing.importers.python_importer", "airflow_resource.dags.dagcheck.bag"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).propagate = False
        logging.getLogger(name).disabled = False
        logging.getLogger(name).setLevel(logging.DEBUG)
    logging.getLogger().removeHandler(handler)

    try:  # lets the parent ask a hung child which line it is stuck on, before killing it
        import faulthandler
        import signal

        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=False)
    except (ImportError, AttributeError, ValueError, OSError):
        pass
    safe_mode = conf.getboolean("core", "dag_discovery_safe_mode", fallback=True)
    timeout_s = conf.getfloat("core", "dagbag_import_timeout", fallback=30.0)
    emit(event="ready", airflow=airflow.__version__, pid=os.getpid())
    registry = get_importer_registry()
    for item in request["items"]:
        target = item["target"]
        if item["expand"]:
            files = sorted(registry.list_dag_files(item["path"], safe_mode=safe_mode))
            emit(event="files", target=target, files=files)
        else:
            files = [item["path"]]
        for f in files:
            emit(event="start", target=target, file=f)
            t0 = time.monotonic()
            try:
                result = _child_check_file(f, safe_mode, timeout_s, captured)
            except BaseException as exc:  # noqa: BLE001 - report, never lose the protocol
                import traceback

                result = {"dag_ids": [], "dag_lines": {}, "problems": [{
                    "file": f, "line": None, "kind": "import", "severity": ERROR,
                    "message": f"validation failed: {_child_exc_message(exc)}", "detail": traceback.format_exc()}]}
            emit(event="report", target=target, file=f, duration_s=round(time.monotonic() - t0, 3), **result)
    emit(event="done")
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
