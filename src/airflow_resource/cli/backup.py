"""`./cli.sh backup create`, `./cli.sh backup list`, `./cli.sh backup restore`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from airflow_resource import audit
from airflow_resource import printer
from airflow_resource.cli.common import path, settings
from airflow_resource.errors import EXIT_ALREADY, CommandError


def cmd_create(args: argparse.Namespace) -> int:
    from airflow_resource.backup import archive
    from airflow_resource.backup import create as backup
    from airflow_resource.config import secrets
    from airflow_resource.stack import handle, system

    s = settings(args, running=True)
    running = handle.is_running(s)
    if not running and handle.stack_processes(s):
        raise CommandError(f"the stack in {s.home} is partly running (supervisord is gone, components are not)",
                           "run `./cli.sh manage stop` first, then back up the stopped stack")
    sec = secrets.require_installed(s)
    passphrase = None
    if not args.no_secrets:
        passphrase = archive.read_passphrase(path(args.passphrase_file), configured=s.backup_passphrase_file)
        if passphrase is None:
            raise CommandError("the secrets are encrypted with a passphrase: none given",
                               f"give --passphrase-file FILE, set {archive.PASSPHRASE_ENV} or the setting "
                               "backup_passphrase_file, or leave the secrets out with --no-secrets")
    who = system.run_as(s.service_user)
    if not args.output:
        backup.make_folder(s)
    if not running:
        printer.step("the stack is stopped: starting its PostgreSQL alone, on a private port, for the dump")
    started = time.monotonic()
    dest, manifest = backup.create(s, sec, who, running, passphrase, path(args.output))
    printer.ok(f"backup written in {time.monotonic() - started:.1f} s: {dest} "
               f"({backup.human_size(dest.stat().st_size)}, secrets {manifest['contents']['secrets']})")
    printer.info("{}", dest)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from airflow_resource.backup import create as backup

    s = settings(args, running=True)
    rows = backup.list_archives(s.backups_dir)
    if args.format == "json":
        printer.emit_json(rows)
    elif rows:
        printer.table(["file", "created", "kind", "size", "airflow", "contents"], [
            [Path(r["file"]).name, r.get("created", "-"), r.get("kind", "-"), backup.human_size(r["size"]),
             r.get("airflow_version", "-"), _contents(r)] for r in rows], title=f"backups in {s.backups_dir}")
    else:
        printer.info("no backups in {}; make one with: `./cli.sh backup create`", s.backups_dir)
    return 0 if rows else EXIT_ALREADY  # the listing is the answer: printed, then exit 2 (errors.py)


def cmd_restore(args: argparse.Namespace) -> int:
    s = settings(args, running=True)
    if not args.file:
        raise CommandError("backup restore needs the archive", "e.g. `./cli.sh backup restore <home>/backups/FILE`")
    from airflow_resource.backup import restore

    started = time.monotonic()
    with audit.action(s, audit.BACKUP_RESTORE, archive=str(Path(args.file).absolute()), force=args.force,
                      accept_settings=args.accept_settings,
                      allow_unauthenticated=args.allow_unauthenticated) as extra:
        manifest = restore.restore(s, Path(args.file), path(args.passphrase_file), args.force,
                                   args.allow_unauthenticated, args.accept_settings)
        extra.update(created=manifest.get("created"), authenticated_by=manifest.get("authenticated_by"))
    printer.ok(f"restored {Path(args.file).name} (made {manifest['created']}, authenticated by: "
               f"{manifest['authenticated_by']}) into {s.home} in {time.monotonic() - started:.1f} s")
    printer.info("start it with: `./cli.sh manage start`")
    return 0


def _contents(row: dict[str, Any]) -> str:
    if "error" in row:
        return printer.markup("[red]{}[/]", row["error"])
    c = row["contents"]
    return (f"db {'+'.join(c['databases'])}, {c['dags']} dag file(s), {c['plugins']} plugin file(s), "
            f"{'+'.join(c['config'])}, secrets {c['secrets']}, tagged by {row.get('authenticated_by', 'none')}")
