"""cli table and parser: each action takes only its own flags; --json is --format json; errors caught once."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from airflow_resource import cli, printer
from airflow_resource.cli import info, table

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("argv, flag", [
    (["manage", "stop", "--keep-data"], "--keep-data"),
    (["manage", "stop", "--workers", "3"], "--workers"),
    (["manage", "start", "--to", "x"], "--to"),
    (["manage", "start", "--force"], "--force"),
    (["status", "--passphrase-file", "x"], "--passphrase-file"),
    (["content", "list", "--purge"], "--purge"),
    (["logs", "scheduler", "--dag", "d"], "--dag"),
    (["logs", "search", "x", "--tail", "5"], "--tail"),
    (["backup", "list", "--force"], "--force"),
    (["dags", "pause", "d", "--wait"], "--wait"),
])
def test_a_flag_another_action_declares_is_refused(capsys, argv, flag):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "error" in err and flag in err
    assert f"usage: resource-apache-airflow {argv[0]} " in err  # the usage of that action, not the top one


@pytest.mark.parametrize("argv, expected", [
    (["manage", "scale", "--workers", "2"], {"action": "scale", "workers": 2}),
    (["manage", "uninstall", "--keep-data"], {"action": "uninstall", "keep_data": True, "force": False}),
    (["manage", "install", "--skip-validation", "--force"], {"skip_validation": True, "force": True}),
    (["manage", "stop", "--force", "--timeout", "9"], {"force": True, "timeout": 9}),
    (["manage", "start", "--no-wait", "--pinned-set", "3.3.2"], {"no_wait": True, "pinned_set": "3.3.2"}),
    (["manage", "--home", "/x", "start"], {"action": "start", "home": "/x"}),  # flags before the action, as before
    (["status", "--fast", "--json"], {"fast": True, "format": "json"}),
    (["credentials", "--show-sensitive"], {"show_sensitive": True, "format": "text"}),
    (["content", "execute", "etl", "--options", "{}", "--wait"], {"dag": "etl", "options": "{}", "wait": True}),
    (["content", "get", "--name", "etl"], {"name": "etl", "dag": None}),
    (["content", "add", "x.py"], {"path": "x.py", "file": None}),
    (["dags", "backfill", "etl", "--from", "2026-01-01", "--to", "2026-01-02"],
     {"start": "2026-01-01", "end": "2026-01-02", "reprocess": "none"}),
    (["backup", "restore", "f.tar.gz", "--force"], {"file": "f.tar.gz", "force": True}),
    (["test", "smoke"], {"command": "test", "action": "smoke"}),
    (["status", "--home", "/x", "--set", "a=1", "-v"], {"home": "/x", "set": ["a=1"], "verbose": True}),
])
def test_each_action_parses_its_own_flags(argv, expected):
    args = cli.PARSER.parse_args(argv)
    assert {k: getattr(args, k) for k in expected} == expected


@pytest.mark.parametrize("argv", [["status"], ["info"], ["credentials"], ["content", "list"], ["backup", "list"],
                                  ["logs", "search", "x"], ["manage", "upgrade"], ["manage", "rollback"]])
def test_json_is_format_json(argv):
    assert cli.PARSER.parse_args([*argv, "--json"]).format == "json"
    assert cli.PARSER.parse_args([*argv, "--format", "json"]).format == "json"
    assert cli.PARSER.parse_args(argv).format == "text"
    assert not hasattr(cli.PARSER.parse_args([*argv, "--json"]), "json")  # reconciled once, in the parser


@pytest.mark.parametrize("argv, action, words", [
    (["logs"], "show", []),
    (["logs", "scheduler"], "show", ["scheduler"]),
    (["logs", "--tail", "5", "scheduler"], "show", ["scheduler"]),
    (["logs", "--home", "/x"], "show", []),
    (["logs", "search", "X"], "search", ["X"]),
    (["logs", "--dag", "d", "search", "X"], "search", ["X"]),
    (["logs", "search", "task"], "search", ["task"]),
    (["logs", "task", "D", "R", "T"], "task", ["D", "R", "T"]),
    (["logs", "task", "D", "R", "T", "--map-index", "-1", "-f"], "task", ["D", "R", "T"]),
])
def test_logs_forms_parse_as_before(argv, action, words):
    args = cli.PARSER.parse_args(argv)
    assert (args.command, args.action, args.words) == ("logs", action, words)


def test_every_action_names_a_function_that_exists():
    for command in table.COMMANDS:
        for action in command.actions if isinstance(command, table.Group) else (command,):
            assert callable(action.load()), action.func


def test_an_unexpected_exception_is_one_line_unless_verbose(monkeypatch, capsys):
    def explode(args):
        raise RuntimeError("boom [bold]\nsecond line")

    monkeypatch.setattr(info, "cmd_info", explode)
    assert cli.main(["info"]) == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert "RuntimeError: boom [bold]" in err and "rerun with --verbose for the traceback" in err
    assert cli.main(["info", "--verbose"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err and "rerun with" not in err


def test_help_is_fast_and_imports_no_command_module():
    code = ("import sys, time; t = time.monotonic(); from airflow_resource import cli; cli.main(['help']); "
            "print(time.monotonic() - t, file=sys.stderr); "
            "print(sorted(m for m in sys.modules if m.startswith('airflow_resource.')), file=sys.stderr)")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "Usage examples" in proc.stdout, proc.stderr
    assert time.monotonic() - started < 2
    loaded = proc.stderr.splitlines()[-1]
    for heavy in ("cli.manage", "cli.content", "cli.backup", "cli.logs", "stack.", "dags.", "backup."):
        assert f"airflow_resource.{heavy}" not in loaded


def test_printer_plain_text_functions_escape_markup(capsys):
    printer.ok("saved /dags/[bold]x[/].py")
    printer.warn("[red]not red[/]")
    printer.step("dag [x]")
    printer.error("[dim]oops", "hint [b]")
    err = capsys.readouterr().err
    for text in ("/dags/[bold]x[/].py", "[red]not red[/]", "dag [x]", "[dim]oops", "hint [b]"):
        assert text in err


def test_printer_table_escapes_cells_but_keeps_markup_cells(capsys):
    printer.table(["a", "b"], [["[red]dag[/]", printer.markup("[green]{}[/]", "[i]ok")]], title="[b]t")
    out = capsys.readouterr().out
    assert "[red]dag[/]" in out and "[b]t" in out and "[i]ok" in out and "[green]" not in out


def test_printer_info_escapes_its_values(capsys):
    printer.info("[bold]{}[/]: {}", "[red]x", "y[/]")
    assert capsys.readouterr().out.strip() == "[red]x: y[/]"


def test_printer_escape_prints_user_text_literally():
    from rich.markup import render

    for text in ("[abc]x+", "[bold]a[/]", "plain [X] [1]", "\\\\[b]", "ends with \\"):
        once = printer.escape(text)
        # no tag is read and none around it is broken: the text comes out as the user wrote it
        assert render(f"[dim]{once}[/]").plain == text
        assert render(f"[red]error:[/] {once}").plain == f"error: {text}" or text.endswith("\\")
