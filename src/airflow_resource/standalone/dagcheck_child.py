"""The DAG check's child: validates DAG files with Airflow's own DagBag, in the venv's Python.

airflow_resource.dags.dagcheck (the parent, in the CLI) pipes this source to the venv's Python, run as the
service user: standard library and Airflow only. Every file is parsed by DagBag with ORM access blocked,
as the dag-processor's parsing subprocess does, plus what DagBag lacks: line numbers, a kind per problem
(listed in the parent), DAG serialization. usage: `python - REQUEST_JSON`, the request being
{"items": [{"path", "target", "expand" (a folder: list its DAG files first)}], "sys_path": [...]}.
Protocol: one PROTO_PREFIX'ed JSON object per line on the original stdout (what user code prints goes
to stderr): ready, files (a folder expanded), start (a file), report, done; fatal if Airflow won't import.
"""

from __future__ import annotations

import collections
import faulthandler
import importlib
import json
import logging
import os
import re
import signal
import sys
import time
import traceback
import zipfile
from typing import Any, Callable

PROTO_PREFIX = "@@dagcheck@@ "
ERROR = "error"
WARNING = "warning"
# Where DagBag logs its bagging errors (cycle, validate, policy): a stdlib logger keeps the exception objects.
BAG_LOGGER = "airflow_resource.dags.dagcheck.bag"
IMPORTER_LOGGER = "airflow.dag_processing.importers.python_importer"

Emit = Callable[..., None]


# ---------------------------------------------------------------- messages and lines

def first_line(text: str) -> str:
    return next((line.strip() for line in str(text).strip().splitlines() if line.strip()), "")


def exc_message(exc: BaseException) -> str:
    first = first_line(str(exc))
    name = type(exc).__name__
    return f"{name}: {first}" if first else name


def line_in(tb_frames: list[Any], files: set[str]) -> int | None:
    """The line of the deepest traceback frame inside the DAG file."""
    return next((fr.lineno for fr in reversed(tb_frames) if os.path.abspath(fr.filename) in files), None)


def dag_lines_of(path: str, dag_ids: list[str]) -> dict[str, int | None]:
    """Best effort: the line where each dag_id is written (a string literal, else a @dag function's def)."""
    try:
        lines = open(path, encoding="utf-8", errors="replace").read().splitlines() if path.endswith(".py") else []
    except OSError:
        lines = []
    found: dict[str, int | None] = {}
    for d in dag_ids:
        pats = [re.compile(r"""(['"])""" + re.escape(d) + r"\1"), re.compile(r"def\s+" + re.escape(d) + r"\s*\(")]
        found[d] = next((n for pat in pats for n, text in enumerate(lines, 1) if pat.search(text)), None)
    return found


def problem(file: str, line: int | None, kind: str, message: str, severity: str = ERROR,
            detail: str = "") -> dict[str, Any]:
    return {"file": file, "line": line, "kind": kind, "message": message, "severity": severity, "detail": detail}


# ---------------------------------------------------------------- classifying errors

def classify_import(exc: BaseException, path: str, tb_text: str, timeout_s: float) -> dict[str, Any]:
    files = {os.path.abspath(path)}
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    line = line_in(frames, files)
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
    msg = exc_message(exc)
    if isinstance(exc, ImportError) and getattr(exc, "name", None):
        msg = f"{type(exc).__name__}: {first_line(str(exc))}"
    if "VARIABLE_NOT_FOUND" in msg or "CONNECTION_NOT_FOUND" in msg:
        msg += (" (validation never reads the metadata database: a Variable or Connection stored there is "
                "unknown here; give Variable.get a default, or read it inside a task)")
    if isinstance(exc, SystemExit):
        msg = f"SystemExit({exc.code!r}): the file calls sys.exit() at import"
    return {"file": path, "line": line, "kind": "import", "message": msg, "detail": tb_text}


def classify_text(path: str, text: str, timeout_s: float) -> dict[str, Any]:
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


def bag_kind(exc: BaseException) -> str:
    names = {c.__name__ for c in type(exc).__mro__}
    if "AirflowDagCycleException" in names:
        return "cycle"
    if "AirflowDagDuplicatedIdException" in names:
        return "duplicate"
    return "invalid"


# ---------------------------------------------------------------- one file

def skipped(path: str, safe_mode: bool, is_zip: bool) -> dict[str, Any] | None:
    """The result for a file Airflow would not parse at all, else None."""
    from airflow.utils.file import might_contain_dag

    if not (path.endswith(".py") or is_zip):
        why = "not a .py file or a .zip bundle: Airflow ignores it"
    elif not is_zip and not might_contain_dag(path, safe_mode):
        why = ("Airflow skips this file: it does not mention both 'airflow' and 'dag' "
               "([core] dag_discovery_safe_mode)")
    else:
        return None
    return {"dag_ids": [], "problems": [problem(path, None, "no_dag", why, WARNING)], "dag_lines": {}}


def stability_problems(path: str) -> list[dict[str, Any]]:
    """Airflow's DAG-version-inflation check (datetime.now() and friends in DAG/task arguments)."""
    problems = []
    try:
        from airflow.utils.dag_version_inflation_checker import check_dag_file_stability

        stab = check_dag_file_stability(path)
        level = getattr(stab.check_level, "value", str(stab.check_level))
        for w in stab.warnings.values():
            problems.append(problem(path, w.line, "runtime_varying", f"{w.message}: {w.code}",
                                    ERROR if level == "error" else WARNING))
    except Exception:  # an optional check: never fail validation on it
        pass
    return problems


def pre_import(path: str) -> None:
    """As the dag-processor does ([dag_processor] parsing_pre_import_modules): Airflow's own modules are
    imported before the timed import, so the timeout measures the file's code, not Airflow's."""
    try:
        from airflow.utils.file import iter_airflow_imports

        for module in iter_airflow_imports(path):
            try:
                importlib.import_module(module)
            except Exception:
                pass  # the timed import reports it
    except Exception:
        pass


def process(path: str, safe_mode: bool, captured: list[Any]) -> tuple[Any, list[Any]]:
    """DagBag over the one file: (the bag, the DAGs it found); its errors land in captured."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=path, collect_dags=False, load_op_links=False)
    bag._log = logging.getLogger(BAG_LOGGER)  # DagBag logs through structlog; a stdlib logger keeps the exceptions
    bag_dag = bag.bag_dag

    def bag_dag_noting_id(dag: Any) -> None:
        try:
            bag_dag(dag)
        except Exception as exc:
            exc._dagcheck_dag_id = dag.dag_id  # type: ignore[attr-defined]
            raise

    bag.bag_dag = bag_dag_noting_id  # type: ignore[method-assign]
    captured.clear()
    return bag, bag.process_file(path, only_if_updated=False, safe_mode=safe_mode)


def sort_captured(captured: list[Any]) -> tuple[dict[str, BaseException], list[BaseException]]:
    """The logged exceptions: ({file: import exception}, [bagging exceptions]), each once."""
    import_exc: dict[str, BaseException] = {}
    bag_excs: list[BaseException] = []
    seen: set[int] = set()
    for rec in captured:
        exc = rec.exc_info[1] if rec.exc_info else None
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        if rec.name == BAG_LOGGER:
            bag_excs.append(exc)
        elif rec.args:
            import_exc[os.path.abspath(str(rec.args[0]))] = exc
    return import_exc, bag_excs


def import_problems(path: str, is_zip: bool, import_errors: dict[str, str], import_exc: dict[str, BaseException],
                    bag_excs: list[BaseException], timeout_s: float) -> list[dict[str, Any]]:
    # DagBag keeps one text per file; bagging errors (cycle, validate, policy) overwrite an import error's.
    problems = []
    bag_texts = {f"{type(e).__name__}: {e}" for e in bag_excs}
    for err_path, text in import_errors.items():
        err_abs = os.path.abspath(err_path)
        exc = import_exc.pop(err_abs, None)
        if exc is not None:
            files_path = err_abs if is_zip else path
            problems.append({**classify_import(exc, files_path, text, timeout_s), "severity": ERROR})
        elif text not in bag_texts:
            problems.append({**classify_text(err_abs, text, timeout_s), "severity": ERROR})
    return problems


def bag_problems(path: str, bag_excs: list[BaseException]) -> list[dict[str, Any]]:
    problems = []
    for exc in bag_excs:
        kind = bag_kind(exc)
        frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
        line = line_in(frames, {os.path.abspath(path)})
        faulty = re.search(r"Faulty task: (\S+)", str(exc)) if kind == "cycle" else None
        if line is None and faulty:
            line = dag_lines_of(path, [faulty.group(1)]).get(faulty.group(1))
        if line is None and getattr(exc, "_dagcheck_dag_id", None):
            line = dag_lines_of(path, [exc._dagcheck_dag_id]).get(exc._dagcheck_dag_id)
        problems.append(problem(path, line, kind, exc_message(exc),
                                detail="".join(traceback.format_exception(type(exc), exc, exc.__traceback__))))
    return problems


def duplicate_problems(path: str, dag_ids: list[str], dag_lines: dict[str, int | None]) -> list[dict[str, Any]]:
    return [problem(path, dag_lines.get(d), "duplicate",
                    f"dag_id {d!r} is defined {n} times in this file; Airflow keeps only one of them")
            for d, n in collections.Counter(dag_ids).items() if n > 1]


def serialization_problems(path: str, found: list[Any], dag_lines: dict[str, int | None]) -> list[dict[str, Any]]:
    """The scheduler only ever sees serialized DAGs: a DAG that cannot be serialized never appears."""
    try:
        from airflow.serialization.serialized_objects import DagSerialization as _Ser
    except ImportError:  # older Airflow 3
        from airflow.serialization.serialized_objects import SerializedDAG as _Ser
    problems = []
    for d in found:
        try:
            _Ser.to_dict(d)
        except Exception as exc:
            problems.append(problem(path, dag_lines.get(d.dag_id), "serialization",
                                    f"DAG {d.dag_id!r}: {exc_message(exc)}", detail=traceback.format_exc()))
    return problems


def warning_problems(path: str, captured_warnings: list[str]) -> list[dict[str, Any]]:
    """Python warnings raised from the DAG file's own lines."""
    problems = []
    for w in captured_warnings:
        m = re.match(r"(.+?):(\d+): ([\w.]+): (.*)", w, re.S)
        if m and os.path.abspath(m.group(1)) == os.path.abspath(path):
            problems.append(problem(path, int(m.group(2)), "warning",
                                    f"{m.group(3)}: {first_line(m.group(4))}", WARNING))
    return problems


def check_file(path: str, safe_mode: bool, timeout_s: float, captured: list[Any]) -> dict[str, Any]:
    # DagBag first, before any check: an install that cannot import it fails every file alike.
    from airflow.dag_processing.dagbag import DagBag  # noqa: F401

    is_zip = zipfile.is_zipfile(path)
    skip = skipped(path, safe_mode, is_zip)
    if skip is not None:
        return skip
    problems: list[dict[str, Any]] = []
    if not is_zip:
        problems += stability_problems(path)
        pre_import(path)
    bag, found = process(path, safe_mode, captured)
    import_exc, bag_excs = sort_captured(captured)
    problems += import_problems(path, is_zip, bag.import_errors, import_exc, bag_excs, timeout_s)
    problems += bag_problems(path, bag_excs)
    dag_ids = [d.dag_id for d in found]
    dag_lines = dag_lines_of(path, dag_ids)
    problems += duplicate_problems(path, dag_ids, dag_lines)
    problems += serialization_problems(path, found, dag_lines)
    problems += warning_problems(path, bag.captured_warnings.get(path, ()))
    if not found and not any(p["severity"] == ERROR for p in problems):
        problems.append(problem(path, None, "no_dag", "defines no DAG: a helper module, or a @dag-decorated function "
                                "that is never called, or a DAG object that is not reachable at module level", WARNING))
    return {"dag_ids": sorted(set(dag_ids)), "problems": problems, "dag_lines": dag_lines}


# ---------------------------------------------------------------- the process

def open_protocol() -> Emit:
    """The protocol keeps the original stdout; whatever DAG files print goes to stderr."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def emit(**msg: Any) -> None:
        proto.write(PROTO_PREFIX + json.dumps(msg) + "\n")
        proto.flush()

    return emit


def run_client_side() -> None:
    """As the dag-processor's parsing child does: user code runs client-side, with no ORM access."""
    os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "client"
    try:
        from airflow.sdk.execution_time.supervisor import block_orm_access

        block_orm_access()
    except ImportError:
        pass


def extend_sys_path(dirs: list[str], dags_folder: str) -> None:
    for d in dirs:
        if d not in sys.path:
            sys.path.append(d)
    if dags_folder and dags_folder not in sys.path:
        sys.path.append(dags_folder)


def capture_errors() -> list[Any]:
    """The log records with an exception from DagBag and its importer: the exception objects themselves."""
    captured: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info and (record.name.startswith("airflow.dag_processing") or record.name == BAG_LOGGER):
                captured.append(record)

    handler = Capture(level=logging.ERROR)
    logging.getLogger().addHandler(handler)
    for name in (IMPORTER_LOGGER, BAG_LOGGER):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).propagate = False
        logging.getLogger(name).disabled = False
        logging.getLogger(name).setLevel(logging.DEBUG)
    logging.getLogger().removeHandler(handler)
    return captured


def answer_where_hung() -> None:
    """Lets the parent ask a hung child which line it is stuck on, before killing it."""
    try:
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=False)
    except (AttributeError, ValueError, OSError):
        pass


def report_file(emit: Emit, target: int, f: str, safe_mode: bool, timeout_s: float, captured: list[Any]) -> None:
    emit(event="start", target=target, file=f)
    t0 = time.monotonic()
    try:
        result = check_file(f, safe_mode, timeout_s, captured)
    except BaseException as exc:  # noqa: BLE001 - report, never lose the protocol
        result = {"dag_ids": [], "dag_lines": {}, "problems": [{
            "file": f, "line": None, "kind": "import", "severity": ERROR,
            "message": f"validation failed: {exc_message(exc)}", "detail": traceback.format_exc()}]}
    emit(event="report", target=target, file=f, duration_s=round(time.monotonic() - t0, 3), **result)


def main() -> int:
    request = json.loads(sys.argv[1])
    emit = open_protocol()
    try:
        import airflow
        from airflow.configuration import conf
        from airflow.dag_processing.importers import get_importer_registry
    except Exception as exc:
        emit(event="fatal", message=f"cannot import Airflow: {exc!r}")
        return 1
    run_client_side()
    extend_sys_path(request["sys_path"], conf.get("core", "dags_folder", fallback=""))
    captured = capture_errors()
    answer_where_hung()
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
            report_file(emit, target, f, safe_mode, timeout_s, captured)
    emit(event="done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
