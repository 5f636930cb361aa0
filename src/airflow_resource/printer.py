"""Every user-visible line goes through here; colour only on a TTY.

Rich renders "[...]" as markup, so a path, DAG id or API message holding brackets would be eaten or
raise. The rule, by construction where it can be:
- step, ok, warn, error and status take plain text: they escape it themselves;
- table escapes every cell and the title, except a cell built with `markup()`;
- info renders markup (callers colour words): put user strings in as `values`, which are escaped.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Iterator

from rich.console import Console
from rich.markup import escape as rich_escape
from rich.table import Table

# Off a terminal (pipes, CI logs) rich would assume 80 columns and wrap tables; allow wide lines there.
PIPE_WIDTH = 200
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
for _c in (out, err):
    if not _c.is_terminal:
        _c.width = PIPE_WIDTH


class Markup(str):
    """Text whose tags are meant and whose user strings are escaped: `table` prints it as markup."""


def escape(value: Any) -> str:
    """Any value as text that rich prints literally (paths, DAG ids, messages from the API, patterns)."""
    return rich_escape(str(value))


def markup(template: str, *values: Any) -> Markup:
    """The template's own tags kept, each value escaped: markup("[red]{}[/]", message)."""
    return Markup(template.format(*(escape(v) for v in values)))


def info(message: str, *values: Any) -> None:
    """A line on stdout; message is markup, and with values it is a template whose values are escaped."""
    out.print(markup(message, *values) if values else message)


def step(message: str) -> None:
    """A line of progress for long work (stderr, so stdout stays parseable)."""
    err.print(f"[cyan]•[/] {escape(message)}")


def ok(message: str) -> None:
    err.print(f"[green]✓[/] {escape(message)}")


def warn(message: str) -> None:
    err.print(f"[yellow]![/] {escape(message)}")


def error(message: str, hint: str | None = None) -> None:
    err.print(f"[red]error:[/] {escape(message)}")  # messages quote TOML tables, paths, ...
    if hint:
        err.print(f"  [dim]→[/] {escape(hint)}")


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, Markup) else escape(value)


def table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    t = Table(title=None if title is None else _cell(title), show_lines=False, header_style="bold")
    for c in columns:
        t.add_column(_cell(c))
    for r in rows:
        t.add_row(*[_cell(v) for v in r])
    out.print(t)


class _Spinner:
    """rich's status with its message escaped like every other plain-text line."""

    def __init__(self, status: Any) -> None:
        self._status = status

    def update(self, message: str) -> None:
        self._status.update(escape(message))


class _Plain:
    def update(self, message: str) -> None:  # progress lines only on change
        pass


@contextlib.contextmanager
def status(message: str) -> Iterator[Any]:
    """A spinner while waiting; plain lines when not on a TTY."""
    if err.is_terminal:
        with err.status(escape(message)) as s:
            yield _Spinner(s)
    else:
        step(message)
        yield _Plain()
