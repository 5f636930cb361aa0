"""The resource CLI (v2.0 resource contract): one declarative command table, errors caught once."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from airflow_resource import RESOURCE_NAME, __version__, printer
from airflow_resource.paths import CONFIG_DIR, REPO_ROOT, TEST_RUNNER
from airflow_resource.errors import EXIT_ALREADY, EXIT_ERROR, CommandError

DEFAULT_START_TIMEOUT_S = 60
DEFAULT_STOP_TIMEOUT_S = 30
DEFAULT_RUN_TIMEOUT_S = 600
# An upgrade that times out waiting for health rolls back: give a loaded machine's start more room.
DEFAULT_UPGRADE_START_TIMEOUT_S = 180
TEST_PHASES = ("smoke", "integration", "unit", "e2e", "all", "long")

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
  ./cli.sh manage stop                       stop everything; no process is left
  ./cli.sh manage upgrade --yes              to the newest pinned set: backup, new venv, migrate, start
  ./cli.sh manage rollback --yes             back to the set before the upgrade (restores its backup)
  ./cli.sh test all                          unit, smoke and integration tests
  APACHE_AIRFLOW_HOME=/tmp/af APACHE_AIRFLOW_API_PORT=58080 ./cli.sh manage start
                                             a second stack beside the first
"""


def _settings(args: argparse.Namespace, running: bool = False, damaged_ok: bool = False):
    from airflow_resource.config import settings

    flags: dict[str, Any] = {"home": args.home, "pinned_set": getattr(args, "pinned_set", None)}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_").lower()
        if not sep or key not in settings.BY_NAME:
            raise CommandError(f"--set {key or item!r}: expected KEY=VALUE with a known key",
                               f"known keys: {', '.join(settings.BY_NAME)}")
        if settings.BY_NAME[key].secret:  # a command line is visible in ps and shell history
            raise CommandError(f"--set {key}: this setting may hold a credential and is not taken from a command line",
                               f"set {settings.BY_NAME[key].env} in the environment or {key} in resource.toml")
        flags[key] = value
    return settings.for_running_stack(flags, damaged_ok) if running else settings.resolve(flags)


# ---------------------------------------------------------------- commands

def cmd_help(args: argparse.Namespace) -> int:
    from airflow_resource.config import settings

    print(PARSER.format_help())
    print(EXAMPLES)
    print("Default configuration (defaults < resource.toml < APACHE_AIRFLOW_* environment < flags):")
    for s in settings.SETTINGS:
        default = "(derived)" if callable(s.default) else repr(s.default)
        print(f"  {s.env:<40} {default:<22} {s.description}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    runtime = json.loads((CONFIG_DIR / "runtime.json").read_text())
    from airflow_resource import AIRFLOW_VERSION
    from airflow_resource.stack import installer
    from airflow_resource.config import pinned_sets

    s = _settings(args)
    home: dict[str, Any] = {"home": str(s.home), "installed": installer.marker(s).exists()}
    if home["installed"]:
        record = pinned_sets.read_record(s.home)
        home.update({"pinned_set": installer.home_set(s).name, "airflow": installer.home_airflow_version(s),
                     "venv": str(s.venv),
                     "rollback_to": (record.get("previous") or {}).get("pinned_set")})
    data = {"resource": RESOURCE_NAME, "version": __version__, "airflow_version": AIRFLOW_VERSION, **runtime,
            "pinned_sets": [p.to_json() for p in pinned_sets.all_sets()], "this_home": home}
    if args.json or args.format == "json":
        printer.emit_json(data)
    else:
        for k, v in data.items():
            if k == "pinned_sets":
                v = ", ".join(f"{p['name']} (Airflow {p['airflow']}{', default' if p['default'] else ''})" for p in v)
            elif k == "this_home":
                v = (f"{v['home']}: pinned set {v['pinned_set']}, Airflow {v['airflow']}, venv {v['venv']}"
                     + (f"; `manage rollback` returns to {v['rollback_to']}" if v.get("rollback_to") else "")
                     if v["installed"] else f"{v['home']}: not installed")
            printer.info(f"{k:<24} {v}")
    return 0


def cmd_manage(args: argparse.Namespace) -> int:
    from airflow_resource.config import airflow_config
    from airflow_resource.stack import installer
    from airflow_resource.config import secrets
    from airflow_resource.stack import handle
    from airflow_resource.stack import scaling
    from airflow_resource.stack import shutdown
    from airflow_resource.stack import startup

    action = args.action
    if action in ("install", "start", "restart", "upgrade"):
        airflow_config.check_options(_settings(args))  # before anything is installed or stopped
    if action in ("upgrade", "rollback"):
        return _upgrade_or_rollback(args)
    if action == "install":
        installer.install(_settings(args), force=args.force)
    elif action == "uninstall":
        s = _settings(args, running=True, damaged_ok=True)
        if handle.is_running(s) or handle.stack_processes(s):
            shutdown.stop(s, _stop_timeout(args, s), force=args.force)
        installer.uninstall(s, keep_data=args.keep_data)
    elif action == "start":
        s = _settings(args)
        if handle.is_running(s):  # start what supervisord gave up on; exit 2 when everything runs
            startup.revive(_settings(args, running=True), args.timeout or DEFAULT_START_TIMEOUT_S)
            return 0
        st = startup.start(s, timeout=args.timeout or DEFAULT_START_TIMEOUT_S, wait=not args.no_wait)
        _print_started(st)
    elif action == "stop":
        s = _settings(args, running=True, damaged_ok=True)
        shutdown.stop(s, _stop_timeout(args, s), force=args.force)
    elif action == "scale":
        if args.workers is None or not 0 <= args.workers <= 64:
            raise CommandError("manage scale needs --workers N (0..64)",
                               "e.g. resource-apache-airflow manage scale --workers 2")
        scaling.scale(_settings(args, running=True), args.workers, args.timeout or DEFAULT_START_TIMEOUT_S)
        printer.ok(f"{args.workers} worker(s) running until the next start; to keep that many, set "
                   f"workers = {args.workers} in resource.toml or APACHE_AIRFLOW_WORKERS={args.workers}")
    elif action == "restart":
        s = _settings(args, running=True)
        secrets.load(s.secrets_file)  # a damaged secrets file is refused before anything is stopped
        if handle.is_running(s) or handle.stack_processes(s):
            shutdown.stop(s, _stop_timeout(args, s), force=args.force)
        st = startup.start(_settings(args), timeout=args.timeout or DEFAULT_START_TIMEOUT_S, wait=not args.no_wait)
        _print_started(st)
    return 0


def _stop_timeout(args: argparse.Namespace, s: Any) -> int:
    """The workers' stop grace (running tasks finish) plus time for the servers to stop."""
    return args.timeout or s.stop_grace_seconds + DEFAULT_STOP_TIMEOUT_S


def _upgrade_or_rollback(args: argparse.Namespace) -> int:
    from airflow_resource.backup import upgrade

    s = _settings(args, running=True)
    timeout = args.timeout or DEFAULT_UPGRADE_START_TIMEOUT_S
    if args.action == "upgrade" and not args.rollback:
        report = upgrade.upgrade(s, args.to, args.yes, timeout)
    else:
        if args.to:
            raise CommandError("rollback takes no --to: it goes back to the set the last upgrade came from",
                               "`info` shows it (this_home: rollback_to)")
        report = upgrade.rollback(s, args.yes, timeout)
    if args.format == "json":
        printer.emit_json(report)
    return 0


def _print_started(st: Any) -> None:
    s = st.s
    printer.info(f"Airflow UI and REST API: {s.base_url or s.api_url}   (user {s.admin_user})")
    printer.info(f"Flower:                  http://127.0.0.1:{s.flower_port}")
    printer.info("Admin password:          ./cli.sh credentials --show-secrets")


def cmd_status(args: argparse.Namespace) -> int:
    from airflow_resource.stack import health as stack_health  # `health` is a local below

    s = _settings(args, running=True)
    report = stack_health.status(s, verbose=args.verbose)
    fmt = "json" if args.json else args.format
    if fmt == "json":
        printer.emit_json(report)
    elif fmt == "yaml":
        import yaml  # shipped with Airflow

        print(yaml.safe_dump(report, sort_keys=False))
    elif not report["running"]:
        printer.info(f"apache-airflow is not running ({s.home}); start it with: ./cli.sh manage start")
    else:
        rows = []
        for c in report["components"]:
            health = "[green]healthy[/]" if c["healthy"] else ("[red]unhealthy[/]" if c["running"] else "[red]down[/]")
            row = [c["name"], c["state"].lower(), health, c["pid"] or "-", c["port"] or "-",
                   _duration(c["uptime_s"])]
            if args.verbose:
                row.append(c["detail"] if c["healthy"] else (c["last_error"] or c["detail"]))
            rows.append(row)
        cols = ["component", "state", "health", "pid", "port", "uptime"] + (["detail"] if args.verbose else [])
        overall = ("healthy" if report["healthy"] else "UNHEALTHY") + (", DEGRADED" if report["degraded"] else "")
        printer.table(cols, rows, title=f"apache-airflow {report['airflow_version']} (pinned set "
                     f"{report['pinned_set']}): {overall}  ({report['ui']})")
        if not args.verbose and not report["healthy"]:
            for c in report["components"]:
                if not c["healthy"]:
                    printer.info(f"  {c['name']}: {c['last_error'] or c['detail']}")
        if any(c["state"] in stack_health.GIVEN_UP for c in report["components"]):
            printer.info("  → supervisord gave up restarting the components shown fatal; once the cause is fixed, "
                         "`manage start` starts them again")
        if "pipelines" in report:
            _print_pipelines(report["pipelines"])
    if fmt not in ("json", "yaml"):
        _print_disk(report["disk"], args.verbose)
    if not report["running"]:
        return EXIT_ALREADY
    return 0 if report["healthy"] else EXIT_ERROR


def _print_disk(disk: dict[str, Any], verbose: bool) -> None:
    """One line per file system (only the low ones unless verbose), then what to do about it."""
    from rich.markup import escape

    colour = {"ok": "green", "warning": "yellow", "critical": "red"}
    for fs in disk["filesystems"]:
        if fs["level"] != "ok" or verbose:
            printer.info(f"disk [{colour[fs['level']]}]{fs['level']}[/]: {fs['free_mb']:,} MB free of "
                         f"{fs['total_mb']:,} MB ({fs['free_percent']} %) for {escape(', '.join(fs['paths']))} "
                         f"[dim](warning below {disk['warn_percent']} %, critical below {disk['critical_mb']} MB)[/]")
    if disk.get("advice"):
        printer.info(f"  → {escape(disk['advice'])}")


def _print_pipelines(p: dict[str, Any]) -> None:
    from rich.markup import escape

    if p.get("error"):
        printer.info(f"[red]pipelines: {escape(p['error'])}[/]")
    queues = p.get("queue_depth")
    depth = ", ".join(f"{q} {n}" for q, n in queues.items()) if queues else "unknown"
    tis = p.get("task_instances") or {}
    counts = ", ".join(f"{n} {st.replace('_', ' ')}" for st, n in tis.items() if n is not None) or "unknown"
    printer.info(f"queue depth (Celery, waiting): {depth}")
    printer.info(f"task instances: {counts}")
    imports = p.get("import_errors") or {}
    printer.info(f"DAG import errors: {imports.get('count', 'unknown')}")
    for e in imports.get("errors", []):
        printer.info(f"  [red]{escape(str(e['file']))}[/]: {escape(e['error'])}")
    failures = p.get("last_failures")
    if failures:
        printer.info("last failed tasks:")
        for f in failures:
            task = f["task_id"] + (f"[{f['map_index']}]" if f.get("map_index", -1) >= 0 else "")
            printer.info(f"  {escape(str(f.get('end_date') or '-'))[:19]}  {escape(f['dag_id'])} / "
                         f"{escape(f['run_id'])} / {escape(task)} / try {f.get('try_number')}")
            printer.info(f"    [dim]./cli.sh logs task {escape(f['dag_id'])} {escape(f['run_id'])} {escape(f['task_id'])}"
                         f"{' --map-index ' + str(f['map_index']) if f.get('map_index', -1) >= 0 else ''}[/]")
    elif failures is not None:
        printer.info("last failed tasks: none")
    for what, err in (p.get("errors") or {}).items():
        printer.info(f"[yellow]{what}: {escape(err)}[/]")


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    h, rem = divmod(int(seconds), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


def cmd_logs(args: argparse.Namespace) -> int:
    from airflow_resource.logs import reader as logs

    s = _settings(args, running=True)
    verb, rest = (args.words[0], args.words[1:]) if args.words else (None, [])
    fmt = "json" if args.json else args.format
    if verb == "search":
        if len(rest) != 1:
            raise CommandError("logs search takes one PATTERN", "e.g. ./cli.sh logs search 'ValueError' --dag my_dag "
                               "--since 2h (quote a pattern with spaces)")
        return logs.search(s, rest[0], dag=args.dag, task=args.task, run=args.run, since=args.since,
                           state=args.state, components=args.component, ignore_case=args.ignore_case,
                           limit=args.limit, fmt=fmt)
    if verb == "task":
        if len(rest) != 3:
            raise CommandError("logs task takes DAG RUN TASK",
                               "e.g. ./cli.sh logs task example_bash manual__2026-11-25T10:00:00+00:00 say_hello")
        return logs.task_log(s, *rest, try_number=args.try_number, map_index=args.map_index, follow=args.follow)
    if len(args.words) > 1:
        raise CommandError(f"logs takes one COMPONENT, got {' '.join(args.words)}",
                           "or: logs search PATTERN, logs task DAG RUN TASK")
    return logs.show(s, verb, args.tail, args.follow)


def cmd_credentials(args: argparse.Namespace) -> int:
    from airflow_resource.stack import credentials

    show = args.show_secrets or args.show_sensitive
    fmt = "json" if args.json else args.format
    return credentials.show(_settings(args, running=True), fmt, show)


def _name(args: argparse.Namespace) -> str:
    name = args.name or args.dag
    if not name:
        raise CommandError("a DAG name is needed", f"e.g. ./cli.sh {args.command} {getattr(args, 'action', '')} example_etl")
    return name


def cmd_content(args: argparse.Namespace) -> int:
    from airflow_resource.dags import content

    s = _settings(args, running=True)
    action = args.action
    if action == "add":
        path = args.file or args.dag
        if not path:
            raise CommandError("content add needs --file PATH", "e.g. ./cli.sh content add --file my_dag.py")
        content.add(s, Path(path), args.name, args.force, wait=not args.no_wait,
                    timeout=args.timeout or content.REGISTER_TIMEOUT_S)
        return 0
    if action == "list":
        fmt = "json" if args.json else args.format
        return content.show_list(s, fmt, args.filter)
    if action == "get":
        return content.get(s, _name(args), Path(args.output) if args.output else None)
    if action == "remove":
        return content.remove(s, _name(args), args.force, args.purge)
    if action == "execute":
        conf = content.parse_conf(args.conf or args.options, args.param)
        return content.execute(s, _name(args), conf, args.wait, args.timeout or DEFAULT_RUN_TIMEOUT_S)
    raise CommandError(f"unknown content action {action}")


def cmd_dags(args: argparse.Namespace) -> int:
    from airflow_resource.dags import content

    s = _settings(args, running=True)
    action, name = args.action, _name(args)
    if action in ("pause", "unpause"):
        return content.set_paused(s, name, action == "pause")
    if action == "clear":
        return content.clear(s, name, args.run, args.all_tasks, args.wait, args.timeout or DEFAULT_RUN_TIMEOUT_S)
    if action == "backfill":
        if not (args.start and args.end):
            raise CommandError("backfill needs --from and --to", "e.g. --from 2026-01-01 --to 2026-01-07")
        return content.backfill(s, name, args.start, args.end, args.reprocess, args.wait,
                                args.timeout or DEFAULT_RUN_TIMEOUT_S)
    if action == "test":
        from airflow_resource.dags import devtest

        return devtest.cli_run(s, name, content.parse_conf(args.conf, args.param), args.file)
    raise CommandError(f"unknown dags action {action}")


def cmd_backup(args: argparse.Namespace) -> int:
    from airflow_resource.backup import create as backup

    s = _settings(args, running=True)
    if args.action == "create":
        return _backup_create(args, s)
    if args.action == "list":
        rows = backup.list_archives(s.backups_dir)
        if args.json or args.format == "json":
            printer.emit_json(rows)
        elif rows:
            printer.table(["file", "created", "kind", "size", "airflow", "contents"], [
                [Path(r["file"]).name, r.get("created", "-"), r.get("kind", "-"), backup.human_size(r["size"]),
                 r.get("airflow_version", "-"), _contents(r)] for r in rows], title=f"backups in {s.backups_dir}")
        else:
            printer.info(f"no backups in {s.backups_dir}; make one with: ./cli.sh backup create")
        return 0 if rows else EXIT_ALREADY
    if not args.file:
        raise CommandError("backup restore needs the archive", "e.g. ./cli.sh backup restore <home>/backups/FILE")
    from airflow_resource.backup import restore

    started = time.monotonic()
    manifest = restore.restore(s, Path(args.file), _path(args.passphrase_file), args.force)
    printer.ok(f"restored {Path(args.file).name} (made {manifest['created']}) into {s.home} "
               f"in {time.monotonic() - started:.1f} s")
    printer.info("start it with: ./cli.sh manage start")
    return 0


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _contents(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"[red]{row['error']}[/]"
    c = row["contents"]
    return (f"db {'+'.join(c['databases'])}, {c['dags']} dag file(s), {c['plugins']} plugin file(s), "
            f"{'+'.join(c['config'])}, secrets {c['secrets']}")


def _backup_create(args: argparse.Namespace, s: Any) -> int:
    from airflow_resource.backup import archive
    from airflow_resource.backup import create as backup
    from airflow_resource.config import secrets
    from airflow_resource.stack import handle
    from airflow_resource.stack import system

    running = handle.is_running(s)
    if not running and handle.stack_processes(s):
        raise CommandError(f"the stack in {s.home} is partly running (supervisord is gone, components are not)",
                           "run `manage stop` first, then back up the stopped stack")
    sec = secrets.require_installed(s)
    passphrase = None
    if not args.no_secrets:
        passphrase = archive.read_passphrase(_path(args.passphrase_file), configured=s.backup_passphrase_file)
        if passphrase is None:
            raise CommandError("the secrets are encrypted with a passphrase: none given",
                               f"give --passphrase-file FILE, set {archive.PASSPHRASE_ENV} or the setting "
                               "backup_passphrase_file, "
                               "or leave the secrets out with --no-secrets")
    who = system.run_as(s.service_user)
    if not args.output:
        backup.make_folder(s, who)
    if not running:
        printer.step("the stack is stopped: starting its PostgreSQL alone, on a private port, for the dump")
    started = time.monotonic()
    dest, manifest = backup.create(s, sec, who, running, passphrase, _path(args.output))
    printer.ok(f"backup written in {time.monotonic() - started:.1f} s: {dest} ({backup.human_size(dest.stat().st_size)}, "
               f"secrets {manifest['contents']['secrets']})")
    printer.info(str(dest))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from airflow_resource.bench import harness as bench

    bench.run(args.quick, Path(args.output) if args.output else None, keep=args.keep, baseline=args.baseline)
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    script = TEST_RUNNER
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(script), f"--{args.phase}"], cwd=REPO_ROOT, env=env)
    return proc.returncode


# ---------------------------------------------------------------- the command table

def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", help="resource home (default: APACHE_AIRFLOW_HOME or a per-user default)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting, e.g. --set api_port=58080")
    p.add_argument("--verbose", "-v", action="store_true", help="more detail; tracebacks on errors")


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1: in the resource contract exit 2 means "already so"."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        printer.error(message, f"see: {self.prog} --help")
        raise SystemExit(EXIT_ERROR)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="resource-apache-airflow",
        description="Run a real Apache Airflow 3 stack (PostgreSQL, Redis, Celery, supervised) with one command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Available commands: help, info, manage, status, logs, credentials, content, dags, backup, bench, test",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="Available commands", parser_class=_Parser)

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        _add_common(p)
        p.set_defaults(func=func)
        return p

    command("help", cmd_help, "show usage, examples and the default configuration")
    p = command("info", cmd_info, "what this resource is (config/runtime.json)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = command("manage", cmd_manage, "install, start, stop, restart, uninstall, scale, upgrade, rollback")
    p.add_argument("action", choices=("install", "uninstall", "start", "stop", "restart", "scale", "upgrade", "rollback"))
    p.add_argument("--pinned-set", metavar="NAME", help="install/start of a new home: the pinned set (Airflow release) "
                   "to install; default: the current one (`info` lists them)")
    p.add_argument("--to", metavar="NAME", help="upgrade: the pinned set to move to (default: the newest)")
    p.add_argument("--rollback", action="store_true", help="upgrade --rollback: the same as `manage rollback`")
    p.add_argument("--yes", "-y", action="store_true", help="upgrade/rollback: do not ask for confirmation")
    p.add_argument("--format", choices=("text", "json"), default="text", help="upgrade/rollback: json report on stdout")
    p.add_argument("--workers", type=int, help="scale: the number of Celery workers to run")
    p.add_argument("--wait", action="store_true", default=True, help="wait until healthy (default)")
    p.add_argument("--no-wait", action="store_true", help="return once the processes are launched")
    p.add_argument("--timeout", type=int, help=f"seconds to wait (start {DEFAULT_START_TIMEOUT_S}; stop: the stop "
                   f"grace + {DEFAULT_STOP_TIMEOUT_S}; the start inside upgrade/rollback {DEFAULT_UPGRADE_START_TIMEOUT_S})")
    p.add_argument("--force", action="store_true", help="install: redo every step; stop: kill at once")
    p.add_argument("--keep-data", action="store_true", help="uninstall: keep databases, DAGs, logs and secrets")
    p.add_argument("--skip-validation", action="store_true", help=argparse.SUPPRESS)

    p = command("status", cmd_status, "health of every component (exit 0 healthy, 1 unhealthy, 2 not running)")
    p.add_argument("--format", choices=("text", "json", "yaml"), default="text")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("--fast", action="store_true", help="accepted for the contract; status is always fast")

    p = command("logs", cmd_logs, "component logs; search task logs; one task's log")
    p.add_argument("words", nargs="*", metavar="COMPONENT | search PATTERN | task DAG RUN TASK",
                   help="a component's log (default: every component); `search PATTERN`: a regular expression "
                        "in task logs; `task DAG RUN TASK`: one task's log")
    p.add_argument("--tail", type=int, default=50, help="lines from the end (default 50)")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep printing new lines; task: until the task instance is finished")
    p.add_argument("--since", help="search: only logs written since, e.g. 30m, 2h, 3d or 2026-11-25T08:00 (UTC)")
    p.add_argument("--dag", help="search: only this DAG")
    p.add_argument("--run", help="search: only this run id")
    p.add_argument("--task", help="search: only this task id")
    p.add_argument("--state", help="search: only task instances now in this state (e.g. failed), from the REST API")
    p.add_argument("--component", action="append", metavar="NAME",
                   help="search: component logs instead of task logs (repeatable; `all` for every one)")
    p.add_argument("--ignore-case", "-i", action="store_true", help="search: ignore case")
    p.add_argument("--limit", type=int, default=1000, help="search: stop after this many matches (default 1000)")
    p.add_argument("--try", dest="try_number", type=int, help="task: this try (default: the latest)")
    p.add_argument("--map-index", type=int, default=-1, help="task: the mapped instance")
    p.add_argument("--format", choices=("text", "json"), default="text", help="search: json for programs")
    p.add_argument("--json", action="store_true", help="same as --format json")

    p = command("credentials", cmd_credentials, "logins of the UI/REST API, PostgreSQL, Redis, Flower")
    p.add_argument("--format", choices=("text", "json", "env"), default="text")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("--show-secrets", action="store_true", help="print passwords instead of ********")
    p.add_argument("--show-sensitive", action="store_true", help=argparse.SUPPRESS)

    p = command("content", cmd_content, "DAG files and runs: add, list, get, remove, execute")
    p.add_argument("action", choices=("add", "list", "get", "remove", "execute"))
    p.add_argument("dag", nargs="?", help="DAG name (get/remove/execute) or file (add)")
    p.add_argument("--name", help="DAG name (get/remove/execute); for add: the file name in the dags folder")
    p.add_argument("--file", help="add: a .py file, a folder of DAG files or a .zip bundle")
    p.add_argument("--type", help="accepted for the contract (dag)")
    p.add_argument("--force", action="store_true", help="add: replace an existing file; remove: a file with several DAGs")
    p.add_argument("--no-wait", action="store_true", help="add: do not wait for the DAG processor")
    p.add_argument("--timeout", type=int, help="seconds to wait (add 120, execute 600)")
    p.add_argument("--format", choices=("text", "json", "yaml"), default="text")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("--filter", help="list: only DAGs whose id contains TEXT")
    p.add_argument("--output", help="get: write the source to FILE")
    p.add_argument("--purge", action="store_true", help="remove: also delete the DAG's run history")
    p.add_argument("--conf", help="execute: run conf as a JSON object")
    p.add_argument("--options", help=argparse.SUPPRESS)
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="execute: one param (JSON value or text)")
    p.add_argument("--wait", action="store_true", help="execute: follow the run and exit 0 only on success")

    p = command("dags", cmd_dags, "operate DAGs: pause, unpause, clear (re-run failed tasks), backfill, test locally")
    p.add_argument("action", choices=("pause", "unpause", "clear", "backfill", "test"))
    p.add_argument("dag", nargs="?", help="DAG name")
    p.add_argument("--name", help="DAG name")
    p.add_argument("--run", help="clear: the run id (default: the latest run)")
    p.add_argument("--all-tasks", action="store_true", help="clear: every task, not only the failed ones")
    p.add_argument("--from", dest="start", help="backfill: first date (YYYY-MM-DD)")
    p.add_argument("--to", dest="end", help="backfill: last date (YYYY-MM-DD)")
    p.add_argument("--reprocess", choices=("none", "failed", "completed"), default="none",
                   help="backfill: which existing runs to run again")
    p.add_argument("--conf", help="test: run conf as a JSON object")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="test: one param")
    p.add_argument("--file", help="test: a DAG file to test instead of the dags folder")
    p.add_argument("--wait", action="store_true", help="clear/backfill: follow until done")
    p.add_argument("--timeout", type=int, help="seconds to wait (600)")

    p = command("backup", cmd_backup, "back up and restore the database, DAGs, plugins, config and secrets")
    p.add_argument("action", choices=("create", "list", "restore"))
    p.add_argument("file", nargs="?", help="restore: the archive")
    p.add_argument("--output", help="create: the archive to write (default <home>/backups/airflow-backup-<time>.tar.gz)")
    secrets_arg = p.add_mutually_exclusive_group()
    secrets_arg.add_argument("--no-secrets", action="store_true", help="create: leave secrets.env out of the archive")
    secrets_arg.add_argument("--passphrase-file", metavar="FILE",
                             help="the passphrase that encrypts (create) or decrypts (restore) the secrets; "
                             "default: APACHE_AIRFLOW_BACKUP_PASSPHRASE, then the backup_passphrase_file setting")
    p.add_argument("--force", action="store_true", help="restore: replace the database a stopped home already holds")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--json", action="store_true", help="same as --format json")

    p = command("bench", cmd_bench, "benchmark a fresh stack in a temporary home: starts, latency, throughput, memory")
    p.add_argument("--quick", action="store_true", help="small sizes: proves the harness works (used in CI)")
    p.add_argument("--output", help="write the figures as JSON to FILE")
    p.add_argument("--keep", action="store_true", help="keep the temporary home afterwards")
    p.add_argument("--baseline", action="store_true",
                   help="then run the same workloads against `airflow standalone` from the same venv and show the ratio")

    p = command("test", cmd_test, "run the test suite: smoke, integration, unit, e2e (browser) or all")
    p.add_argument("phase", choices=TEST_PHASES)
    return parser


PARSER = build_parser()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ["help"]
    args = PARSER.parse_args(argv)
    if not getattr(args, "func", None):
        return cmd_help(args)
    try:
        return args.func(args)
    except CommandError as exc:
        printer.error(exc.message, exc.hint)
        if args.verbose:
            import traceback

            traceback.print_exc()
        return exc.exit_code
    except KeyboardInterrupt:
        printer.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
