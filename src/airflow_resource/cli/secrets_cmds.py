"""`./cli.sh credentials rotate` and `./cli.sh connections ...`: the commands that change secrets."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from airflow_resource import printer
from airflow_resource.cli.common import DEFAULT_START_TIMEOUT_S, settings
from airflow_resource.errors import CommandError

PASSWORD_MAX_BYTES = 4096

# ---------------------------------------------------------------- credentials rotate


def cmd_rotate(args: argparse.Namespace) -> int:
    from airflow_resource.stack import rotation

    s = settings(args, running=True)
    timeout = args.timeout or DEFAULT_START_TIMEOUT_S * 3
    if args.drop_old_jwt_keys:
        if args.names or args.all:
            raise CommandError("--drop-old-jwt-keys takes no secret names", "run it on its own")
        result = rotation.drop_old_jwt_keys(s, timeout)
    else:
        try:
            result = rotation.rotate(s, args.names, args.all, timeout, args.jwt_grace,
                                     args.drain_timeout if args.drain_timeout is not None
                                     else rotation.DEFAULT_DRAIN_TIMEOUT_S)
        except rotation.RotationFailed as exc:
            if args.format == "json":
                printer.emit_json(exc.result)
            raise
    if args.format == "json":
        printer.emit_json(result)
        return 0
    if "dropped" in result:
        printer.ok(f"dropped {len(result['dropped'])} old JWT key(s); restarted {', '.join(result['restarted'])}")
        return 0
    printer.ok(f"rotated {', '.join(result['rotated'])} in {result['seconds']} s; restarted "
               f"{', '.join(result['restarted']) or 'nothing'}")
    if result.get("jwt_old_key_trusted_until"):
        printer.info("the old JWT key stays trusted until {} (tokens it signed are valid until they expire); "
                     "then `./cli.sh credentials rotate --drop-old-jwt-keys`", result["jwt_old_key_trusted_until"])
    printer.info("new values: ./cli.sh credentials --show-secrets")
    return 0


# ---------------------------------------------------------------- connections


def read_password(args: argparse.Namespace) -> str | None:
    """The password from --password-file (a file, or - for stdin) or --password-prompt; never from argv."""
    if args.password_prompt:
        if not sys.stdin.isatty():
            raise CommandError("--password-prompt needs a terminal", "use --password-file FILE or --password-file -")
        first = getpass.getpass("password: ")
        if first != getpass.getpass("again: "):
            raise CommandError("the two passwords differ: nothing changed")
        return first
    if not args.password_file:
        return None
    if args.password_file == "-":
        text = sys.stdin.read(PASSWORD_MAX_BYTES + 1)
    else:
        try:
            text = Path(args.password_file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read the password file: {exc}") from None
    lines = text.splitlines()
    if not lines or not lines[0] or len(text) > PASSWORD_MAX_BYTES:
        raise CommandError("the password file is empty or too long (its first line is the password)")
    return lines[0]


def cmd_conn_add(args: argparse.Namespace) -> int:
    from airflow_resource.stack import connections

    item: dict[str, Any] = connections.from_uri(args.uri) if args.uri else {}
    for key in ("conn_type", "host", "login", "schema", "port", "description", "extra"):
        value = getattr(args, key)
        if value is not None:
            item[key] = value
    item["connection_id"] = args.conn_id
    password = read_password(args)
    if password is not None:
        item["password"] = password
    added = connections.add(settings(args, running=True), item)
    if args.format == "json":
        printer.emit_json(added)
    else:
        printer.ok(f"connection {added['connection_id']} added ({added['conn_type']}); stored encrypted")
    return 0


def _rows(conns: list[dict[str, Any]]) -> list[list[Any]]:
    return [[c["connection_id"], c["conn_type"], c.get("host") or "", c.get("port") or "", c.get("login") or "",
             c.get("schema") or "", c.get("password") or ""] for c in conns]


def cmd_conn_list(args: argparse.Namespace) -> int:
    from airflow_resource.stack import connections

    conns = connections.list_all(settings(args, running=True))
    if args.format == "json":
        printer.emit_json({"connections": conns})
    else:
        printer.table(["id", "type", "host", "port", "login", "schema", "password"], _rows(conns),
                      title=f"{len(conns)} connection(s)")
    return 0


def cmd_conn_get(args: argparse.Namespace) -> int:
    from airflow_resource.stack import connections

    conn = connections.get(settings(args, running=True), args.conn_id, args.show_secrets)
    if args.format == "json":
        printer.emit_json(conn)
    else:
        for key, value in conn.items():
            printer.info("{} {}", f"{key:<14}", "" if value is None else value)
        if not args.show_secrets and conn.get("password"):
            printer.info("password masked: add --show-secrets to print it")
    return 0


def cmd_conn_remove(args: argparse.Namespace) -> int:
    from airflow_resource.stack import connections

    connections.remove(settings(args, running=True), args.conn_id)
    printer.ok(f"connection {args.conn_id} removed")
    return 0


def cmd_conn_export(args: argparse.Namespace) -> int:
    from airflow_resource.stack import connections

    n = connections.export(settings(args, running=True), Path(args.file), args.force)
    printer.ok(f"{n} connection(s) written to {args.file} (mode 0600: it holds their passwords)")
    return 0


def cmd_conn_import(args: argparse.Namespace) -> int:
    from airflow_resource.stack import connections

    added = connections.import_file(settings(args, running=True), Path(args.file))
    if args.format == "json":
        printer.emit_json({"imported": added})
    else:
        printer.ok(f"{len(added)} connection(s) imported: {', '.join(added) or 'none'}")
    return 0


def cmd_conn_types(args: argparse.Namespace) -> int:
    from airflow_resource.stack import connections

    types = sorted(connections.conn_types(connections.running_api(settings(args, running=True))))
    if args.format == "json":
        printer.emit_json({"types": types})
    else:
        for t in types:
            printer.info("{}", t)
    return 0
