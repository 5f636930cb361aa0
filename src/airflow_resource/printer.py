"""Every user-visible line goes through here; colour only on a TTY."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Iterator

from rich.console import Console
from rich.markup import escape
from rich.table import Table

# Off a terminal (pipes, CI logs) rich would assume 80 columns and wrap tables; allow wide lines there.
PIPE_WIDTH = 200
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
for _c in (out, err):
    if not _c.is_terminal:
        _c.width = PIPE_WIDTH


def info(message: str) -> None:
    out.print(message)


def step(message: str) -> None:
    """A line of progress for long work (stderr, so stdout stays parseable)."""
    err.print(f"[cyan]•[/] {message}")


def ok(message: str) -> None:
    err.print(f"[green]✓[/] {message}")


def warn(message: str) -> None:
    err.print(f"[yellow]![/] {message}")


def error(message: str, hint: str | None = None) -> None:
    err.print(f"[red]error:[/] {escape(message)}", markup=True)  # messages quote TOML tables, paths, ...
    if hint:
        err.print(f"  [dim]→[/] {escape(hint)}")


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    t = Table(title=title, show_lines=False, header_style="bold")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    out.print(t)


@contextlib.contextmanager
def status(message: str) -> Iterator[Any]:
    """A spinner while waiting; plain lines when not on a TTY."""
    if err.is_terminal:
        with err.status(message) as s:
            yield s
    else:
        step(message)

        class _Plain:
            def update(self, msg: str) -> None:  # progress lines only on change
                pass

        yield _Plain()
