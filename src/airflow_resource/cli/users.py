"""`./cli.sh users`, `./cli.sh roles` and `./cli.sh teams`: who may do what (access/)."""

from __future__ import annotations

import argparse
from functools import partial

from airflow_resource import printer
from airflow_resource.cli.common import settings
from airflow_resource.errors import EXIT_ALREADY, CommandError


def _password_source(args: argparse.Namespace):
    from airflow_resource.access import prompt

    return partial(_read, prompt, args.password_file, args.password_stdin)


def _read(prompt, password_file, from_stdin, username: str) -> str:
    return prompt.read(username, password_file, from_stdin)


def _empty(rows: list, what: str, fmt: str) -> int:
    if fmt == "json":
        printer.emit_json(rows)
    elif not rows:
        printer.info(f"no {what}")
    return 0


# ---------------------------------------------------------------- users

def cmd_users_add(args: argparse.Namespace) -> int:
    from airflow_resource.access import users

    users.add(settings(args, running=True), _user(args), _password_source(args), args.role or [], args.email,
              args.first_name, args.last_name)
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from airflow_resource.access import users

    rows = users.list_users(settings(args, running=True))
    if args.format == "json" or not rows:
        return _empty(rows, "users", args.format)
    printer.table(["user", "roles", "e-mail", "active", "last login"],
                  [[u["username"] + (" (resource)" if u["managed_by_resource"] else ""), ", ".join(u["roles"]),
                    u["email"], "yes" if u["active"] else "no", u["last_login"] or ""] for u in rows],
                  title=f"{len(rows)} user(s)")
    return 0


def cmd_users_remove(args: argparse.Namespace) -> int:
    from airflow_resource.access import users

    users.remove(settings(args, running=True), _user(args))
    return 0


def cmd_users_set_password(args: argparse.Namespace) -> int:
    from airflow_resource.access import users

    users.set_password(settings(args, running=True), _user(args), _password_source(args))
    return 0


def cmd_users_set_roles(args: argparse.Namespace) -> int:
    from airflow_resource.access import users

    users.set_roles(settings(args, running=True), _user(args), args.roles)
    return 0


def _user(args: argparse.Namespace) -> str:
    if not args.username:
        raise CommandError("a user name is needed", f"e.g. ./cli.sh {args.command} {args.action} jane")
    return args.username


# ---------------------------------------------------------------- roles

def cmd_roles_list(args: argparse.Namespace) -> int:
    from airflow_resource.access import roles

    rows = roles.list_roles(settings(args, running=True))
    if args.format == "json" or not rows:
        return _empty(rows, "roles", args.format)
    printer.table(["role", "permissions", "users", "team"],
                  [[r["name"], len(r["permissions"]), ", ".join(r["users"]), r["team"] or ""] for r in rows],
                  title=f"{len(rows)} role(s)")
    return 0


def cmd_roles_add(args: argparse.Namespace) -> int:
    from airflow_resource.access import roles

    roles.add(settings(args, running=True), args.name, args.copy_from)
    return 0


def cmd_roles_grant(args: argparse.Namespace) -> int:
    from airflow_resource.access import roles

    roles.grant(settings(args, running=True), args.name, args.permission, args.resource)
    return 0


# ---------------------------------------------------------------- teams

def cmd_teams_add(args: argparse.Namespace) -> int:
    from airflow_resource.access import teams

    teams.add(settings(args, running=True), args.team)
    return 0


def cmd_teams_list(args: argparse.Namespace) -> int:
    from airflow_resource.access import teams

    rows = teams.list_teams(settings(args, running=True))
    if args.format == "json" or not rows:
        return _empty(rows, "teams (`./cli.sh teams add NAME` makes one)", args.format)
    printer.table(["team", "DAGs", "users", "folder", "in sync"],
                  [[t["team"], ", ".join(t["dags"]), ", ".join(t["users"]), t["folder"],
                    "yes" if t["in_sync"] else "no: `teams sync`"] for t in rows], title=f"{len(rows)} team(s)")
    return 0


def cmd_teams_remove(args: argparse.Namespace) -> int:
    from airflow_resource.access import teams

    teams.remove(settings(args, running=True), args.team)
    return 0


def cmd_teams_add_user(args: argparse.Namespace) -> int:
    from airflow_resource.access import teams

    teams.add_user(settings(args, running=True), args.team, _user(args))
    return 0


def cmd_teams_remove_user(args: argparse.Namespace) -> int:
    from airflow_resource.access import teams

    teams.remove_user(settings(args, running=True), args.team, _user(args))
    return 0


def cmd_teams_sync(args: argparse.Namespace) -> int:
    from airflow_resource.access import teams

    owned = teams.sync(settings(args, running=True))
    if not owned:
        printer.info("no teams")
        return EXIT_ALREADY
    for team, dags in owned.items():
        printer.info("{}: {}", team, ", ".join(dags) or "no DAGs")
    return 0
