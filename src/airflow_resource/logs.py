"""`logs`: read the component logs supervisord writes (and rotates)."""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

from airflow_resource import printer
from airflow_resource.errors import AlreadySo, CommandError
from airflow_resource.settings import Settings

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
        raise AlreadySo(f"no logs yet in {s.component_logs_dir}", "start the stack: ./cli.sh manage start")
    if component and component not in logs:
        raise CommandError(f"no log for {component!r}", f"components with logs: {', '.join(logs)}")
    chosen = {component: logs[component]} if component else {k: v for k, v in logs.items() if k != "supervisord"}
    for name, path in chosen.items():
        if len(chosen) > 1:
            printer.info(f"[bold]==> {name} ({path}) <==[/]")
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
