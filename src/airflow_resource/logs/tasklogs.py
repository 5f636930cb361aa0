"""Task log files on disk: where Airflow writes them, how a record reads, search, follow.

Airflow 3 writes one file per task try under `[logging] base_log_folder` (`<home>/logs/tasks`), named by
its default `log_filename_template`:
    dag_id=<dag>/run_id=<run>/task_id=<task>/[map_index=<i>/]attempt=<try>.log
with `.trigger.<job>.log` beside it for the part a deferred task ran in the triggerer. Each line is a JSON
object (structlog): `timestamp`, `level`, `event`, and for exceptions `error_detail` (type, value, frames);
a line that is not JSON is kept as plain text, as Airflow's own reader does (file_task_handler.py).
Stdlib (+ msgspec when present) and the shared base only: the housekeeper imports it too.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

import json

from airflow_resource import safe_files
from airflow_resource.errors import CommandError

try:  # shipped with Airflow 3 (the task SDK uses it); 3-5x faster than json on log lines
    import msgspec

    _decode = msgspec.json.decode
    _DecodeError: tuple[type[Exception], ...] = (msgspec.DecodeError,)
except ImportError:  # pragma: no cover - the CLI outside the venv
    _decode = json.loads
    _DecodeError = (ValueError,)

SINCE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
FINAL_TI_STATES = ("success", "failed", "skipped", "upstream_failed", "removed")


@dataclass(frozen=True)
class TaskLogFile:
    """One log file of one try of a task instance."""

    path: Path
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    trigger: bool = False  # the triggerer's part of a deferred try

    @property
    def label(self) -> str:
        task = self.task_id + (f"[{self.map_index}]" if self.map_index >= 0 else "")
        return f"{self.dag_id} / {self.run_id} / {task} / try {self.try_number}" + (" (triggerer)" if self.trigger else "")


def open_log(path: Path) -> IO[str]:
    """A task log opened for reading as root: logs/tasks is the service user's, so a task could plant a
    FIFO there (a plain read would hang on it) or a link; safe_files refuses both (CommandError)."""
    return os.fdopen(safe_files.open_plain(path), encoding="utf-8", errors="replace")


def read_log(path: Path) -> str:
    with open_log(path) as f:
        return f.read()


def relative_path(dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
    """The path Airflow's default log_filename_template renders, relative to base_log_folder."""
    mapped = f"map_index={map_index}/" if map_index >= 0 else ""
    return f"dag_id={dag_id}/run_id={run_id}/task_id={task_id}/{mapped}attempt={try_number}.log"


_ATTEMPT = re.compile(r"attempt=(\d+)\.log(\.trigger\.\d+\.log)?$")


def _dirs(parent: str, key: str, want: str | None) -> list[tuple[str, str]]:
    """(path, value) of the `key=value` folders in parent, or just the wanted one."""
    if want is not None:
        d = os.path.join(parent, f"{key}={want}")
        return [(d, want)] if os.path.isdir(d) else []
    try:
        with os.scandir(parent) as it:  # sorted: the same search prints its matches in the same order
            return sorted((e.path, e.name[len(key) + 1:]) for e in it if e.name.startswith(key + "=") and e.is_dir())
    except OSError:
        return []


def _attempts(task_dir: str, dag_id: str, run_id: str, task_id: str, map_index: int,
              modified_after: float | None) -> Iterator[TaskLogFile]:
    try:
        with os.scandir(task_dir) as it:
            entries = list(it)
    except OSError:
        return
    for e in entries:
        if e.name.startswith("map_index="):
            try:
                index = int(e.name[len("map_index="):])
            except ValueError:
                continue
            yield from _attempts(e.path, dag_id, run_id, task_id, index, modified_after)
            continue
        m = _ATTEMPT.match(e.name)
        if not m:
            continue
        if modified_after is not None:
            try:
                if e.stat().st_mtime < modified_after:
                    continue
            except OSError:
                continue
        yield TaskLogFile(Path(e.path), dag_id, run_id, task_id, map_index, int(m.group(1)), bool(m.group(2)))


def find(root: Path, dag_id: str | None = None, run_id: str | None = None, task_id: str | None = None,
         modified_after: float | None = None) -> Iterator[TaskLogFile]:
    """The task log files under root, pruned by dag/run/task at their level of the tree (no full walk);
    a file last written before modified_after (epoch s) is passed over without being opened."""
    for dag_dir, dag in _dirs(str(root), "dag_id", dag_id):
        for run_dir, run in _dirs(dag_dir, "run_id", run_id):
            for task_dir, task in _dirs(run_dir, "task_id", task_id):
                yield from _attempts(task_dir, dag, run, task, -1, modified_after)


# ---------------------------------------------------------------- records

def parse_line(line: str) -> dict[str, Any]:
    """One line of a task log as a record; plain text becomes {"event": line}."""
    if line.startswith("{"):
        try:
            rec = _decode(line)
            if isinstance(rec, dict):
                return rec
        except _DecodeError:
            pass
    return {"event": line}


def render(rec: dict[str, Any]) -> list[str]:
    """A record as a person reads it: `timestamp level event`, then an exception as Python prints it."""
    event = rec.get("event")
    if not isinstance(event, str):
        event = json.dumps(event, ensure_ascii=False)
    head = " ".join(str(x) for x in (rec.get("timestamp"), rec.get("level"), event) if x not in (None, ""))
    lines = [head]
    for exc in rec.get("error_detail") or []:
        if not isinstance(exc, dict):
            continue
        for frame in exc.get("frames") or []:
            lines.append(f'    File "{frame.get("filename")}", line {frame.get("lineno")}, in {frame.get("name")}')
        lines.append(f"  {exc.get('exc_type')}: {exc.get('exc_value')}")
    return lines


def render_text(text: str) -> list[str]:
    """A whole log (file or REST API content) rendered line by line."""
    out: list[str] = []
    for line in text.splitlines():
        if line:
            out += render(parse_line(line))
    return out


# ---------------------------------------------------------------- search

def parse_since(value: str, now: float | None = None) -> float:
    """`90s`, `15m`, `2h`, `3d`, `1w` or an ISO date/time (UTC unless it says otherwise): epoch seconds."""
    now = time.time() if now is None else now
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", value or "")
    if m:
        return now - float(m.group(1)) * SINCE_UNITS[m.group(2)]
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {value!r}: expected a duration like 30m, 2h, 3d, 1w or an ISO time "
                         "like 2026-11-25T08:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def iso_utc(epoch: float) -> str:
    """The form of Airflow's log timestamps (UTC, `Z`), so they compare as strings."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utc_string(ts: Any) -> str | None:
    """A record's timestamp as a comparable UTC string (Airflow writes `...Z`; an offset is converted)."""
    if not isinstance(ts, str) or len(ts) < 19:
        return None
    if ts.endswith("Z"):
        return ts
    try:
        when = datetime.fromisoformat(ts)
    except ValueError:
        return None
    return iso_utc((when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp())


@dataclass(frozen=True)
class Match:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    file: str
    line: int        # 1-based line of the file
    timestamp: str | None
    level: str | None
    text: str        # the rendered line that matched

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# Characters render() puts between the raw values of a record (and Python's repr would), and the
# words it adds to frame lines: a piece of the pattern without them lies inside one raw value.
_SEPARATORS = re.compile(r"""[\s:,"'{}\[\]]+""")
_RENDER_WORDS = ("File", "line", "in")


def required_piece(rx: re.Pattern[str]) -> re.Pattern[str] | None:
    """A literal every match of rx must contain and that a log file must hold as it is on disk, or None.

    The pattern's top-level run of plain characters (a concatenation: each is required), cut at the
    characters render() adds, keeping the longest piece of printable ASCII without JSON escapes. A
    file whose raw text lacks it cannot have a rendered line the pattern finds, so it is not parsed:
    this is what makes a search of 10,000 logs fast. Any doubt (alternation first, flags, private
    parser missing) answers None and every line is parsed.
    """
    try:
        from re import _parser as sre  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - Python < 3.11
        import sre_parse as sre  # type: ignore[no-redef]
    try:
        parsed = sre.parse(rx.pattern, rx.flags & ~re.IGNORECASE)
    except Exception:  # noqa: BLE001 - a pattern re compiled but the parser does not take: no prefilter
        return None
    runs, current = [], []
    for op, arg in parsed:
        if op is sre.LITERAL and 32 <= arg < 127 and chr(arg) not in '"\\':
            current.append(chr(arg))
        else:
            runs.append("".join(current))
            current = []
    runs.append("".join(current))
    pieces = [p for run in runs for p in _SEPARATORS.split(run)
              if len(p) >= 3 and not any(p in w for w in _RENDER_WORDS)]
    if not pieces:
        return None
    return re.compile(re.escape(max(pieces, key=len)), rx.flags & re.IGNORECASE)


def search_file(f: TaskLogFile, rx: re.Pattern[str], since_iso: str | None = None,
                piece: re.Pattern[str] | None = None) -> list[Match]:
    """Every rendered line of one log file that the pattern finds; lines older than since_iso are skipped.
    piece: required_piece(rx), checked on the raw text first."""
    try:
        with open_log(f.path) as fh:
            text = fh.read()
    except (OSError, CommandError):  # gone, or planted: not a log
        return []
    if piece is not None and not piece.search(text):
        return []
    out: list[Match] = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        rec = parse_line(line)
        ts = rec.get("timestamp")
        if since_iso is not None:
            ts_utc = _utc_string(ts)
            if ts_utc is not None and ts_utc < since_iso:
                continue
        for rendered in render(rec):
            if rx.search(rendered):
                out.append(Match(f.dag_id, f.run_id, f.task_id, f.map_index, f.try_number, str(f.path), n,
                                 ts if isinstance(ts, str) else None, rec.get("level"), rendered))
    return out


def search(files: Iterable[TaskLogFile], rx: re.Pattern[str], since: float | None = None,
           limit: int | None = None) -> tuple[list[Match], int, bool]:
    """Matches in order of the files given; (matches, files searched, cut at limit)."""
    since_iso = iso_utc(since) if since is not None else None
    piece = required_piece(rx)
    matches: list[Match] = []
    searched = 0
    for f in files:
        searched += 1
        matches += search_file(f, rx, since_iso, piece)
        if limit is not None and len(matches) >= limit:
            return matches[:limit], searched, True
    return matches, searched, False


def search_component_log(path: Path, name: str, rx: re.Pattern[str], since: float | None = None) -> list[dict[str, Any]]:
    """Lines of a component's log (and its rotated copies, oldest first) that the pattern finds."""
    files = sorted(path.parent.glob(path.name + ".*"), key=lambda p: -_suffix_number(p)) + [path]
    out: list[dict[str, Any]] = []
    for p in files:
        try:
            if since is not None and p.stat().st_mtime < since:
                continue
            with open(p, encoding="utf-8", errors="replace") as fh:
                for n, line in enumerate(fh, 1):
                    if rx.search(line):
                        out.append({"component": name, "file": str(p), "line": n, "text": line.rstrip("\n")})
        except OSError:
            continue
    return out


def _suffix_number(p: Path) -> int:
    try:
        return int(p.suffix.lstrip("."))
    except ValueError:
        return 0


def is_final(state: str | None) -> bool:
    return state in FINAL_TI_STATES
