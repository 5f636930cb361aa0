"""`./cli.sh help`, `./cli.sh info`, `./cli.sh credentials`, `./cli.sh bench`, `./cli.sh test`: the commands that describe, measure or test the resource."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from airflow_resource import RESOURCE_NAME, __version__, printer
from airflow_resource.cli.common import path, set_flags, settings
from airflow_resource.paths import CONFIG_DIR, REPO_ROOT, TEST_RUNNER

EXAMPLES = """\
Usage examples:
  ./cli.sh manage start                      install what is missing, start, wait until healthy
  ./cli.sh status                            every component: running, healthy, pid, port, uptime
  ./cli.sh status --format json              the same for programs (top-level running/healthy)
  ./cli.sh credentials --show-secrets        UI/REST admin, PostgreSQL, Redis and Flower logins
  ./cli.sh logs scheduler --tail 100         one component's log (--follow to stream)
  ./cli.sh logs search 'ValueError' --since 2h --state failed   find a line in the task logs
  ./cli.sh logs task my_dag RUN_ID my_task --follow              one task's log while it runs
  ./cli.sh content add --file my_dag.py      validate, place atomically, wait until registered
  ./cli.sh content list                      DAGs, last runs, import errors
  ./cli.sh content execute example_etl --wait   trigger, follow each task, exit 0 on success
  ./cli.sh dags test example_etl             run a DAG in-process, no stack needed
  ./cli.sh backup create --passphrase-file pw   database, DAGs, plugins, config, encrypted secrets
  ./cli.sh backup restore FILE --passphrase-file pw   into a stopped or fresh home
  ./cli.sh audit --since 1d --event 'resource.*'   who added, removed, scaled, restored; failed logins
  ./cli.sh manage stop                       stop everything; no process is left
  ./cli.sh manage upgrade --yes              to the newest pinned set: backup, new venv, migrate, start
  ./cli.sh manage rollback --yes             back to the set before the upgrade (restores its backup)
  ./cli.sh test all                          unit, smoke and integration tests
  APACHE_AIRFLOW_HOME=/tmp/af APACHE_AIRFLOW_API_PORT=58080 ./cli.sh manage start
                                             a second stack beside the first
"""


def cmd_help(args: argparse.Namespace) -> int:
    from airflow_resource.cli.parser import PARSER
    from airflow_resource.cli.table import COMMANDS, Group
    from airflow_resource.config import settings as config

    print(PARSER.format_help())
    print("Actions (each with its own flags: COMMAND ACTION --help):")
    for c in COMMANDS:
        if isinstance(c, Group):
            names = c.metavar if c.default else ", ".join(c.names)
            print(f"  {c.name:<12} {names}")
    print()
    print(EXAMPLES)
    print("Default configuration (defaults < resource.toml < APACHE_AIRFLOW_* environment < flags):")
    for s in config.SETTINGS:
        default = "(derived)" if callable(s.default) else repr(s.default)
        print(f"  {s.env:<40} {default:<22} {s.description}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from airflow_resource import AIRFLOW_VERSION
    from airflow_resource.config import pinned_sets
    from airflow_resource.stack import installer

    runtime = json.loads((CONFIG_DIR / "runtime.json").read_text())
    s = settings(args)
    home: dict[str, Any] = {"home": str(s.home), "installed": installer.marker(s).exists()}
    if home["installed"]:
        record = pinned_sets.read_record(s.home)
        home.update({"pinned_set": installer.home_set(s).name, "airflow": installer.home_airflow_version(s),
                     "venv": str(s.venv), "rollback_to": (record.get("previous") or {}).get("pinned_set")})
    data = {"resource": RESOURCE_NAME, "version": __version__, "airflow_version": AIRFLOW_VERSION, **runtime,
            "pinned_sets": [p.to_json() for p in pinned_sets.all_sets()], "this_home": home}
    if args.format == "json":
        printer.emit_json(data)
        return 0
    for k, v in data.items():
        if k == "pinned_sets":
            v = ", ".join(f"{p['name']} (Airflow {p['airflow']}{', default' if p['default'] else ''})" for p in v)
        elif k == "this_home":
            v = (f"{v['home']}: pinned set {v['pinned_set']}, Airflow {v['airflow']}, venv {v['venv']}"
                 + (f"; `./cli.sh manage rollback` returns to {v['rollback_to']}" if v.get("rollback_to") else "")
                 if v["installed"] else f"{v['home']}: not installed")
        printer.info("{} {}", f"{k:<24}", v)
    return 0


def cmd_credentials(args: argparse.Namespace) -> int:
    from airflow_resource.stack import credentials

    return credentials.show(settings(args, running=True), args.format, args.show_secrets or args.show_sensitive)


def cmd_bench(args: argparse.Namespace) -> int:
    from airflow_resource.bench import harness

    overrides = harness.stack_overrides(set_flags(args), args.airflow_option)
    harness.run(args.quick, path(args.output), keep=args.keep, baseline=args.baseline, only=args.only,
                overrides=overrides)
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """The phase is the action's name: test/run-tests.sh --PHASE, with this Python."""
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(["bash", str(TEST_RUNNER), f"--{args.action}"], cwd=REPO_ROOT, env=env).returncode

