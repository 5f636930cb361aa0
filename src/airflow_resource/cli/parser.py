"""argparse built from the command table: one sub-parser per command and per action."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from airflow_resource import __version__, printer
from airflow_resource.cli.table import COMMANDS, GLOBAL, Action, Arg, Group
from airflow_resource.errors import EXIT_ERROR

PROG = "resource-apache-airflow"


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1: in the resource contract exit 2 means "already so"."""

    group: Group | None = None  # set on a group's parser: its action word is moved first
    leaf = False  # an action's parser: a flag it does not declare is refused with its own usage

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        printer.error(message, f"see: {self.prog} --help")
        raise SystemExit(EXIT_ERROR)

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        if self.group is not None and args is not None:
            args = action_first(self.group, list(args))
        ns, rest = super().parse_known_args(args, namespace)
        if self.leaf and rest:
            self.error(f"unrecognized arguments: {' '.join(rest)}")
        return ns, rest


class _TopParser(_Parser):
    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        ns, rest = super().parse_known_args(args, namespace)
        # --json is --format json: the one place that says so (and it wins over --format, as it always did).
        if hasattr(ns, "json"):
            if ns.json:
                ns.format = "json"
            del ns.json
        return ns, rest


def action_first(group: Group, argv: list[str]) -> list[str]:
    """The group's action word moved first, so flags may come before it as they always could
    (`./cli.sh manage --home /x start`); for a group with a default action (logs), that action when the first word
    is none of them (`./cli.sh logs scheduler`, `./cli.sh logs --tail 5`)."""
    with_value = {f for a in group.actions for arg in (*a.args, *GLOBAL) if arg.takes_value for f in arg.flags}
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            break
        if word.startswith("-") and word != "-":
            i += 2 if word in with_value else 1
            continue
        if word in group.names:
            return [word, *argv[:i], *argv[i + 1:]]
        break
    if group.default and not {"-h", "--help"} & set(argv[:i]):
        return [group.default, *argv]
    return argv


def _add(parser: argparse.ArgumentParser, args: Sequence[Arg]) -> None:
    exclusive: dict[str, Any] = {}
    for arg in args:
        target: Any = parser
        if arg.exclusive:
            if arg.exclusive not in exclusive:
                exclusive[arg.exclusive] = parser.add_mutually_exclusive_group()
            target = exclusive[arg.exclusive]
        target.add_argument(*arg.flags, **arg.kwargs)


def _leaf(sub: Any, action: Action) -> None:
    p = sub.add_parser(action.name, help=action.help, description=action.help)
    _add(p, (*action.args, *GLOBAL))
    p.set_defaults(spec=action)
    p.leaf = True


def build() -> argparse.ArgumentParser:
    names = ", ".join(c.name for c in COMMANDS)
    parser = _TopParser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="Run a real Apache Airflow 3 stack (PostgreSQL, Redis, Celery, supervised) "
                                    "with one command.",
                        epilog=f"Available commands: {names}\n"
                               f"Each command's own flags: {PROG} COMMAND [ACTION] --help")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="Available commands", parser_class=_Parser)
    for command in COMMANDS:
        if isinstance(command, Action):
            _leaf(sub, command)
            continue
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        p.group = command
        actions = p.add_subparsers(dest="action", metavar=command.metavar, title="actions", parser_class=_Parser,
                                   required=True)
        for action in command.actions:
            _leaf(actions, action)
    return parser


PARSER = build()
