"""Runs the DAG check's child (standalone/dagcheck_child.py) over a work list; runs in the CLI.

The child is the venv's Python with the child's source on stdin, as the service user, in its own
process group; its original stdout carries the protocol (ready, files, start, report, done, fatal).
The hard deadline per file comes on top of Airflow's own [core] dagbag_import_timeout (SIGALRM, which
C code or code that ignores SIGALRM escapes): a child that overruns is asked where it hangs, killed with
its whole process group, the file is reported as "timeout", and the caller starts a fresh child for the
rest. A child that dies in a file reports that file as "crash".

Reports reach the caller as the child's report messages ({"dag_ids", "problems", "dag_lines",
"duration_s"}); a file the child could not report on gets one of the same shape.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from airflow_resource import standalone
from airflow_resource.errors import CommandError
from airflow_resource.standalone.dagcheck_child import ERROR, PROTO_PREFIX

STARTUP_TIMEOUT_S = 120.0  # importing Airflow in the child (~3 s warm; far more on a cold disk)
BETWEEN_FILES_TIMEOUT_S = 60.0  # listing a directory, bookkeeping between files
STDERR_TAIL_BYTES = 4000


@dataclass
class Item:
    """One piece of work: a file, or a folder to expand (target: the index of the path it came from)."""
    path: str
    target: int
    expand: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "target": self.target, "expand": self.expand}


Record = Callable[[Item, dict[str, Any]], None]


def child_env(env: dict[str, str], timeout_s: float) -> dict[str, str]:
    """The child imports untrusted code: it gets the shared, non-secret part of the stack's environment
    only (airflow_config.for_component with no secret part), whatever `env` held."""
    from airflow_resource.config import airflow_config

    return {
        **airflow_config.without_secrets(env),
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": str(float(timeout_s)),
        # Full tracebacks: the line in the DAG file may be deep under library frames.
        "AIRFLOW__CORE__DAGBAG_IMPORT_ERROR_TRACEBACKS": "True",
        "AIRFLOW__CORE__DAGBAG_IMPORT_ERROR_TRACEBACK_DEPTH": "50",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",  # validation must leave no __pycache__ next to the user's files
    }


class ChildRun:
    """One child over the work list: its process, where the protocol stands, and each file's report.

    hard_grace_s: a file is killed that long after Airflow's own timeout_s. record(item, report) is
    called once per file, in the order the child takes them.
    """

    def __init__(self, todo: list[Item], sys_path: list[str], python: Path, env: dict[str, str], timeout_s: float,
                 hard_grace_s: float, user: Any, record: Record) -> None:
        self.todo = list(todo)
        self.python, self.timeout_s, self.hard_grace_s, self.record = python, timeout_s, hard_grace_s, record
        self.current: Item | None = None
        self.started = 0.0
        self.ready = self.done = False
        self.deadline = 0.0
        request = {"items": [i.to_json() for i in todo], "sys_path": sys_path}
        kw: dict[str, Any] = user.popen_kwargs() if user is not None else {}
        home = env.get("AIRFLOW_HOME")
        cwd = home if home and os.path.isdir(home) else "/"
        self.errfile = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([str(python), "-", json.dumps(request)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.errfile, env=child_env(env, timeout_s),
                                     cwd=cwd, start_new_session=True, **kw)

    def run(self) -> list[Item]:
        """Returns what is left to do (after a killed or crashed file)."""
        try:
            self._send_source()
            ended = self._read_events()
            if ended == "killed":
                return self.todo
            return self._after_done() if ended == "done" else self._after_eof()
        finally:
            # Whatever the DAG files started at top level dies with the child's process group.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if self.proc.poll() is None:
                self.proc.wait()
            if self.proc.stdout:
                self.proc.stdout.close()
            self.errfile.close()

    def stderr_tail(self) -> str:
        self.errfile.seek(0, os.SEEK_END)
        self.errfile.seek(max(0, self.errfile.tell() - STDERR_TAIL_BYTES))
        return self.errfile.read().decode(errors="replace").strip()

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()

    def finish(self, item: Item, kind: str, message: str, detail: str = "", line: int | None = None,
               file: str | None = None) -> None:
        """A file whose child did not report: record it, drop it from the work list."""
        self.record(item, {"dag_ids": [], "dag_lines": {}, "duration_s": round(time.monotonic() - self.started, 3),
                           "problems": [{"file": file or item.path, "line": line, "kind": kind, "message": message,
                                         "severity": ERROR, "detail": detail}]})
        self.todo.remove(item)

    def _send_source(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(standalone.source("dagcheck_child").encode())
            self.proc.stdin.close()
        except BrokenPipeError:
            pass

    def _read_events(self) -> str:
        """Handle the child's lines until "done", end of file ("eof"), or a passed deadline ("killed")."""
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.deadline = time.monotonic() + STARTUP_TIMEOUT_S
        buf = b""
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self._overran()
                return "killed"
            if not sel.select(timeout=remaining):
                continue
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode(errors="replace")
                if line.startswith(PROTO_PREFIX):
                    self._on_event(json.loads(line[len(PROTO_PREFIX):]))
            if self.done:
                return "done"
            if not chunk:
                return "eof"

    def _overran(self) -> None:
        """A deadline passed: between files the child is broken (raise); in a file, that file timed out."""
        if self.current is None:
            self.kill()
            what = "starting (importing Airflow)" if not self.ready else "listing files"
            raise CommandError(f"the validation subprocess hung while {what}; killed it",
                               f"its last output: {self.stderr_tail()[-800:] or '(none)'}")
        limit = self.timeout_s + self.hard_grace_s
        file, line = where_hung(self.proc.pid, self.current.path, self.stderr_tail)
        self.kill()
        why = ("Airflow does not time .zip bundles" if self.current.path.endswith(".zip") else
               f"it escaped Airflow's {self.timeout_s:g} s dagbag_import_timeout: SIGALRM ignored or a long call in C")
        at = f"; line {line} was running" if line else ""
        self.finish(self.current, "timeout", f"top-level code still running after {limit:g} s, killed ({why}){at}",
                    line=line, file=file)

    def _on_event(self, msg: dict[str, Any]) -> None:
        event = msg["event"]
        now = time.monotonic()
        if event == "ready":
            self.ready = True
            self.deadline = now + BETWEEN_FILES_TIMEOUT_S
        elif event == "files":
            i = next(n for n, it in enumerate(self.todo) if it.expand and it.target == msg["target"])
            self.todo[i:i + 1] = [Item(f, msg["target"]) for f in msg["files"]]
            self.deadline = now + BETWEEN_FILES_TIMEOUT_S
        elif event == "start":
            self.current = self._item(msg)
            self.started = now
            self.deadline = now + self.timeout_s + self.hard_grace_s
        elif event == "report":
            item = self._item(msg)
            self.record(item, msg)
            self.todo.remove(item)
            self.current = None
            self.deadline = now + BETWEEN_FILES_TIMEOUT_S
        elif event == "fatal":
            self.kill()
            raise CommandError(f"the validation subprocess failed: {msg['message']}",
                               f"is {self.python} the venv with Airflow? {self.stderr_tail()[-800:]}")
        elif event == "done":
            self.done = True

    def _item(self, msg: dict[str, Any]) -> Item:
        """The work item (a file) an event names."""
        return next(it for it in self.todo if not it.expand and it.target == msg["target"] and it.path == msg["file"])

    def _after_done(self) -> list[Item]:
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self.todo:  # cannot happen unless parent and child disagree; never loop on it
            raise CommandError(f"the validation subprocess skipped {len(self.todo)} file(s): {self.todo[0].path} ...",
                               "please report this as a bug of the resource")
        return self.todo

    def _after_eof(self) -> list[Item]:
        """End of file without "done": the child died."""
        self.kill()
        tail = self.stderr_tail()
        if self.current is not None:
            self.finish(self.current, "crash",
                        f"the interpreter died while importing this file (exit {self.proc.returncode})",
                        tail[-STDERR_TAIL_BYTES:])
            return self.todo
        raise CommandError(f"the validation subprocess exited with {self.proc.returncode} before validating anything",
                           f"is {self.python} the venv with Airflow? Its output: {tail[-800:] or '(none)'}")


def where_hung(pid: int, path: str, stderr_tail: Callable[[], str]) -> tuple[str, int | None]:
    """Ask the hung child where it is (faulthandler on SIGUSR1 dumps its stack to stderr, even in C)."""
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
