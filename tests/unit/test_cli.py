"""cli: argument parsing, help, errors caught once (no command here touches a stack)."""

from __future__ import annotations

import json

import pytest

from airflow_resource import RESOURCE_NAME, __version__
from airflow_resource import cli
from airflow_resource.cli import common, manage, status
from airflow_resource.config import settings
from airflow_resource.errors import EXIT_ERROR

pytestmark = pytest.mark.unit


def test_help_output(capsys):
    assert cli.main(["help"]) == 0
    out = capsys.readouterr().out
    assert "Usage examples" in out
    assert "Available commands" in out
    assert "Default configuration" in out
    for command in ("manage", "status", "logs", "credentials", "test", "info"):
        assert command in out
    for s in settings.SETTINGS:
        assert s.env in out
    assert "48080" in out  # defaults are shown


def test_no_arguments_is_help(capsys):
    assert cli.main([]) == 0
    assert "Usage examples" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["status", "--no-such-flag"],
    ["--no-such-flag"],
    ["manage", "explode"],
    ["manage"],
    ["logs", "--tail", "many"],
    ["status", "--format", "xml"],
    ["test", "everything"],
    ["no-such-command"],
])
def test_wrong_arguments_exit_non_zero(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code not in (0, None)
    assert "error" in capsys.readouterr().err.lower()


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_parser_defaults():
    args = cli.PARSER.parse_args(["manage", "start"])
    assert args.action == "start" and args.spec.load() is manage.cmd_start
    assert args.timeout is None and args.no_wait is False
    assert cli.PARSER.parse_args(["manage", "stop"]).force is False  # start has no --force
    args = cli.PARSER.parse_args(["logs", "scheduler", "-f"])
    assert (args.words, args.tail, args.follow) == (["scheduler"], 50, True)
    args = cli.PARSER.parse_args(["credentials", "--show-secrets", "--format", "env"])
    assert args.show_secrets and args.format == "env"
    args = cli.PARSER.parse_args(["status", "--home", "/x", "--set", "a=1", "--set", "b=2", "-v"])
    assert args.home == "/x" and args.set == ["a=1", "b=2"] and args.verbose


def test_set_flags_reach_settings(home, clean_environ):
    args = cli.PARSER.parse_args(["status", "--home", str(home), "--set", "api-port=58080", "--set", "WORKERS=3"])
    s = common.settings(args)
    assert s.home == home
    assert s.api_port == 58080 and s.sources["api_port"] == "flag"
    assert s.workers == 3


def test_set_unknown_key_is_a_command_error(home, clean_environ, capsys):
    assert cli.main(["status", "--home", str(home), "--set", "api_prot=1"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "api_prot" in err and "KEY=VALUE" in err


def test_set_without_equals_is_a_command_error(home, clean_environ, capsys):
    assert cli.main(["status", "--home", str(home), "--set", "api_port"]) == EXIT_ERROR
    assert "api_port" in capsys.readouterr().err


def test_bad_setting_value_is_reported_not_raised(home, clean_environ, capsys):
    assert cli.main(["credentials", "--home", str(home), "--set", "api_port=abc"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "api_port" in err and "abc" in err


def test_broken_config_file_is_reported(home, clean_environ, capsys):
    (home / "resource.toml").write_text("api_port = [\n")
    assert cli.main(["logs", "--home", str(home)]) == EXIT_ERROR
    assert "resource.toml" in capsys.readouterr().err


def test_info_json(capsys):
    assert cli.main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["resource"] == RESOURCE_NAME
    assert data["version"] == __version__
    assert data["ports"]["api"] == settings.BY_NAME["api_port"].default


@pytest.mark.parametrize("seconds, text", [(None, "-"), (0, "0s"), (59, "59s"), (65, "1m05s"), (3600, "1h00m"),
                                           (3725, "1h02m")])
def test_duration(seconds, text):
    assert status.duration(seconds) == text


@pytest.mark.parametrize("argv", [["manage", "scale"], ["manage", "scale", "--workers", "-1"],
                                  ["manage", "scale", "--workers", "65"]])
def test_scale_needs_a_worker_count_in_range(argv, capsys, tmp_path):
    assert cli.main([*argv, "--home", str(tmp_path)]) == 1
    assert "--workers N" in capsys.readouterr().err


def test_set_refuses_a_secret_setting_and_does_not_echo_it(home, clean_environ, capsys):
    url = "https://hooks.example/T0/secret-token"
    assert cli.main(["status", "--home", str(home), "--set", f"alert_webhook_url={url}"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "not taken from a command line" in err and "APACHE_AIRFLOW_ALERT_WEBHOOK_URL" in err
    assert "secret-token" not in err


def test_logs_words_pick_search_task_or_a_component(home, clean_environ, capsys):
    assert cli.main(["logs", "search", "--home", str(home)]) == EXIT_ERROR
    assert "logs search takes one PATTERN" in capsys.readouterr().err
    assert cli.main(["logs", "task", "a", "b", "--home", str(home)]) == EXIT_ERROR
    assert "logs task takes DAG RUN TASK" in capsys.readouterr().err
    assert cli.main(["logs", "scheduler", "worker-1", "--home", str(home)]) == EXIT_ERROR
    assert "logs takes one COMPONENT" in capsys.readouterr().err
