"""`./cli.sh manage`: install, uninstall, start, stop, restart, scale, upgrade, rollback."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_resource import audit
from airflow_resource import printer
from airflow_resource.cli.common import (DEFAULT_START_TIMEOUT_S, DEFAULT_STOP_TIMEOUT_S,
                                         DEFAULT_UPGRADE_START_TIMEOUT_S, settings)
from airflow_resource.errors import CommandError


def _check_options(args: argparse.Namespace) -> None:
    """Airflow options in resource.toml are checked before anything is installed or stopped."""
    from airflow_resource.config import airflow_config

    airflow_config.check_options(settings(args))


def cmd_install(args: argparse.Namespace) -> int:
    from airflow_resource.stack import installer

    _check_options(args)
    installer.install(settings(args), force=args.force)
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    from airflow_resource.stack import handle, installer, shutdown

    s = settings(args, running=True, damaged_ok=True)
    if handle.is_running(s) or handle.stack_processes(s):
        shutdown.stop(s, _stop_timeout(args, s), force=args.force)
    installer.uninstall(s, keep_data=args.keep_data)
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from airflow_resource.stack import handle, startup

    _check_options(args)
    s = settings(args)
    if handle.is_running(s):  # start what supervisord gave up on; exit 2 when everything runs
        startup.revive(settings(args, running=True), args.timeout or DEFAULT_START_TIMEOUT_S)
        return 0
    _print_started(startup.start(s, timeout=args.timeout or DEFAULT_START_TIMEOUT_S, wait=not args.no_wait))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from airflow_resource.stack import shutdown

    s = settings(args, running=True, damaged_ok=True)
    shutdown.stop(s, _stop_timeout(args, s), force=args.force)
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    from airflow_resource.config import secrets, tls
    from airflow_resource.stack import handle, shutdown, startup

    _check_options(args)
    s = settings(args, running=True)
    secrets.load(s.secrets_file)  # a damaged secrets file is refused before anything is stopped
    tls.check(settings(args))  # so is an api-server the new settings would open to the network in clear
    if handle.is_running(s) or handle.stack_processes(s):
        shutdown.stop(s, _stop_timeout(args, s), force=args.force)
    st = startup.start(settings(args), timeout=args.timeout or DEFAULT_START_TIMEOUT_S, wait=not args.no_wait)
    _print_started(st)
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    from airflow_resource.stack import scaling

    if args.workers is None or not 0 <= args.workers <= 64:
        raise CommandError("manage scale needs --workers N (0..64)",
                           "e.g. `./cli.sh manage scale --workers 2`")
    s = settings(args, running=True)
    with audit.action(s, audit.MANAGE_SCALE, workers_before=s.workers, workers=args.workers):
        scaling.scale(s, args.workers, args.timeout or DEFAULT_START_TIMEOUT_S)
    printer.ok(f"{args.workers} worker(s) running until the next start; to keep that many, set "
               f"workers = {args.workers} in resource.toml or APACHE_AIRFLOW_WORKERS={args.workers}")
    return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    from airflow_resource.backup import upgrade

    _check_options(args)
    if args.rollback:
        return cmd_rollback(args)
    s = settings(args, running=True)
    with audit.action(s, audit.MANAGE_UPGRADE, pinned_set_before=s.pinned_set, to=args.to) as extra:
        report = upgrade.upgrade(s, args.to, args.yes, args.timeout or DEFAULT_UPGRADE_START_TIMEOUT_S)
        extra["report"] = report
    return _report(args, report)


def cmd_rollback(args: argparse.Namespace) -> int:
    from airflow_resource.backup import upgrade

    s = settings(args, running=True)
    if args.to:
        raise CommandError("rollback takes no --to: it goes back to the set the last upgrade came from",
                           "`./cli.sh info` shows it (this_home: rollback_to)")
    with audit.action(s, audit.MANAGE_ROLLBACK, pinned_set_before=s.pinned_set) as extra:
        report = upgrade.rollback(s, args.yes, args.timeout or DEFAULT_UPGRADE_START_TIMEOUT_S)
        extra["report"] = report
    return _report(args, report)


def _report(args: argparse.Namespace, report: Any) -> int:
    if args.format == "json":
        printer.emit_json(report)
    return 0


def _stop_timeout(args: argparse.Namespace, s: Any) -> int:
    """The workers' stop grace (running tasks finish) plus time for the servers to stop."""
    return args.timeout or s.stop_grace_seconds + DEFAULT_STOP_TIMEOUT_S


def _print_started(st: Any) -> None:
    s = st.s
    printer.info("Airflow UI and REST API: {}   (user {})", s.base_url or s.api_url, s.admin_user)
    printer.info("Flower:                  http://127.0.0.1:{}", s.flower_port)
    printer.info("Admin password:          ./cli.sh credentials --show-secrets")
