"""The command table: every command and action with its own flags, as data.

parser.py builds argparse from it, so a flag is accepted only where an action declares it. A command's
function is named as "module:function" in this package and imported when the command runs: `./cli.sh help`
imports none of them.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from airflow_resource.cli.common import (DEFAULT_RUN_TIMEOUT_S, DEFAULT_START_TIMEOUT_S, DEFAULT_STOP_TIMEOUT_S,
                                         DEFAULT_UPGRADE_START_TIMEOUT_S)

# Flags that take no value: the parser skips the values of the others when it looks for an action word.
_NO_VALUE = ("store_true", "store_false", "store_const", "count", "help", "version")


class Arg:
    """One argparse argument: its flags (or positional name) and add_argument's keywords."""

    def __init__(self, *flags: str, exclusive: str | None = None, **kwargs: Any) -> None:
        self.flags = flags
        self.exclusive = exclusive  # arguments of one action sharing this name exclude each other
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"Arg{self.flags!r}"

    def but(self, **kwargs: Any) -> Arg:
        """The same argument with other keywords (an action's own help text, default, ...)."""
        return Arg(*self.flags, exclusive=self.exclusive, **{**self.kwargs, **kwargs})

    @property
    def positional(self) -> bool:
        return not self.flags[0].startswith("-")

    @property
    def takes_value(self) -> bool:
        return not self.positional and self.kwargs.get("action", "store") not in _NO_VALUE


@dataclass(frozen=True)
class Action:
    """A command or a group's action: what it does, its function, its own flags."""

    name: str
    help: str
    func: str  # "module:function" in airflow_resource.cli
    args: tuple[Arg, ...] = field(default=(), repr=False)
    # It changes users, roles, teams or connections: a refusal is recorded in the event log as
    # resource.<command>.<action> (the change itself is recorded by the code that makes it).
    audited: bool = False

    def load(self) -> Callable[[argparse.Namespace], int]:
        module, _, name = self.func.partition(":")
        return getattr(importlib.import_module(f"airflow_resource.cli.{module}"), name)


@dataclass(frozen=True)
class Group:
    """A command made of actions (`./cli.sh manage start`); default: the action run when none is named."""

    name: str
    help: str
    actions: tuple[Action, ...]
    default: str | None = None
    metavar: str = "ACTION"
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(a.name for a in self.actions))


Command = Union[Action, Group]

# ---------------------------------------------------------------- shared arguments

HOME = Arg("--home", help="resource home (default: APACHE_AIRFLOW_HOME or a per-user default)")
SET = Arg("--set", action="append", metavar="KEY=VALUE", help="override a setting, e.g. --set api_port=58080")
VERBOSE = Arg("--verbose", "-v", action="store_true", help="more detail; tracebacks on errors")
GLOBAL = (HOME, SET, VERBOSE)  # every action has them, after its name: `./cli.sh status --home /x -v`

FORCE = Arg("--force", action="store_true")
TIMEOUT = Arg("--timeout", type=int, metavar="SECONDS")
WAIT = Arg("--wait", action="store_true", default=True, help="wait until healthy (default)")
NO_WAIT = Arg("--no-wait", action="store_true", help="return once the processes are launched")
PINNED_SET = Arg("--pinned-set", metavar="NAME", help="a new home: the pinned set (Airflow release) to install; "
                 "default: the current one (`./cli.sh info` lists them)")
YES = Arg("--yes", "-y", action="store_true", help="do not ask for confirmation")
NAME = (Arg("dag", nargs="?", metavar="NAME", help="DAG name (or --name)"), Arg("--name", help="DAG name"))
CONF = Arg("--conf", help="run conf as a JSON object")
PARAM = Arg("--param", action="append", metavar="KEY=VALUE", help="one param (JSON value or text)")
WAIT_RUN = Arg("--wait", action="store_true", help="follow until done; exit 0 only on success")
OUTPUT = Arg("--output", metavar="FILE")
PASSPHRASE_FILE = Arg("--passphrase-file", metavar="FILE", exclusive="secrets",
                      help="the passphrase that encrypts (create) or decrypts (restore) the secrets; default: "
                           "APACHE_AIRFLOW_BACKUP_PASSPHRASE, then the backup_passphrase_file setting")


def formats(*choices: str, help: str | None = None) -> tuple[Arg, Arg]:
    """--format with this command's choices, and --json for it; parser.py turns --json into format json."""
    return (Arg("--format", choices=choices, default="text", help=help or f"output: {', '.join(choices)}"),
            Arg("--json", action="store_true", help="same as --format json"))


# ---------------------------------------------------------------- the commands

_STOP_TIMEOUT = TIMEOUT.but(help=f"seconds to wait for the stop (default: the stop grace + {DEFAULT_STOP_TIMEOUT_S})")
_START_TIMEOUT = TIMEOUT.but(help=f"seconds to wait until healthy (default {DEFAULT_START_TIMEOUT_S})")
_UPGRADE_TIMEOUT = TIMEOUT.but(help=f"seconds the start after it may take (default {DEFAULT_UPGRADE_START_TIMEOUT_S})")
_RUN_TIMEOUT = TIMEOUT.but(help=f"seconds to wait (default {DEFAULT_RUN_TIMEOUT_S})")
_REPORT = formats("text", "json", help="json: the report on stdout")

MANAGE = Group("manage", "install, start, stop, restart, uninstall, scale, upgrade, rollback", (
    Action("install", "install what is missing (venv, PostgreSQL, Redis, config)", "manage:cmd_install", (
        FORCE.but(help="redo every step"), PINNED_SET,
        Arg("--skip-validation", action="store_true", help=argparse.SUPPRESS))),
    Action("uninstall", "stop and remove the home", "manage:cmd_uninstall", (
        FORCE.but(help="kill a running stack at once"),
        Arg("--keep-data", action="store_true", help="keep databases, DAGs, logs and secrets"), _STOP_TIMEOUT)),
    Action("start", "install what is missing, start, wait until healthy", "manage:cmd_start",
           (WAIT, NO_WAIT, _START_TIMEOUT, PINNED_SET)),
    Action("stop", "stop everything; no process is left", "manage:cmd_stop",
           (FORCE.but(help="kill at once"), _STOP_TIMEOUT)),
    Action("restart", "stop, then start", "manage:cmd_restart", (
        FORCE.but(help="stop: kill at once"), WAIT, NO_WAIT,
        TIMEOUT.but(help=f"seconds each of the stop and the start may take (start {DEFAULT_START_TIMEOUT_S})"))),
    Action("scale", "run another number of Celery workers", "manage:cmd_scale", (
        Arg("--workers", type=int, metavar="N", help="the number of Celery workers to run (0..64)"), _START_TIMEOUT)),
    Action("upgrade", "to a newer pinned set: backup, new venv, migrate, start", "manage:cmd_upgrade", (
        Arg("--to", metavar="NAME", help="the pinned set to move to (default: the newest)"),
        Arg("--rollback", action="store_true", help="the same as `./cli.sh manage rollback`"),
        YES, *_REPORT, _UPGRADE_TIMEOUT)),
    Action("rollback", "back to the set before the upgrade (restores its backup)", "manage:cmd_rollback", (
        Arg("--to", metavar="NAME", help=argparse.SUPPRESS),  # refused with the reason, not as a usage error
        YES, *_REPORT, _UPGRADE_TIMEOUT)),
))

STATUS = Action("status", "health of every component (exit 0 healthy, 1 unhealthy, 2 not running)",
                "status:cmd_status", (*formats("text", "json", "yaml"),
                                      Arg("--fast", action="store_true",
                                          help="accepted for the contract; status is always fast")))

_FOLLOW = Arg("--follow", "-f", action="store_true", help="keep printing new lines")
LOGS = Group("logs", "component logs; search task logs; one task's log", (
    Action("show", "a component's log (default: every component)", "logs:cmd_show", (
        Arg("words", nargs="*", metavar="COMPONENT", help="scheduler, worker-1, ... (default: every component)"),
        Arg("--tail", type=int, default=50, help="lines from the end (default 50)"), _FOLLOW,
        Arg("--since", help=argparse.SUPPRESS))),  # the contract passes it; a component log is read by --tail
    Action("search", "a regular expression in the task logs (or component logs)", "logs:cmd_search", (
        Arg("words", nargs="*", metavar="PATTERN", help="a regular expression (quote one with spaces)"),
        Arg("--since", help="only logs written since, e.g. 30m, 2h, 3d or 2026-11-25T08:00 (UTC)"),
        Arg("--dag", help="only this DAG"), Arg("--run", help="only this run id"),
        Arg("--task", help="only this task id"),
        Arg("--state", help="only task instances now in this state (e.g. failed), from the REST API"),
        Arg("--component", action="append", metavar="NAME",
            help="component logs instead of task logs (repeatable; `all` for every one)"),
        Arg("--ignore-case", "-i", action="store_true", help="ignore case"),
        Arg("--limit", type=int, default=1000, help="stop after this many matches (default 1000)"),
        *formats("text", "json", help="json for programs"))),
    Action("task", "one task's log", "logs:cmd_task", (
        Arg("words", nargs="*", metavar="DAG RUN TASK", help="the task instance"),
        Arg("--try", dest="try_number", type=int, help="this try (default: the latest)"),
        Arg("--map-index", type=int, default=-1, help="the mapped instance"),
        _FOLLOW.but(help="until the task instance is finished"))),
), default="show", metavar="[COMPONENT | search PATTERN | task DAG RUN TASK]")

ROTATABLE = ("admin", "postgres", "redis", "flower", "jwt", "api-secret-key", "fernet")  # rotation_plan.NAMES
CREDENTIALS = Group("credentials", "logins of the UI/REST API, PostgreSQL, Redis, Flower; rotate the secrets", (
    Action("show", "the logins (default)", "info:cmd_credentials", (
        *formats("text", "json", "env"),
        Arg("--show-secrets", action="store_true", help="print passwords instead of ********"),
        Arg("--show-sensitive", action="store_true", help=argparse.SUPPRESS))),
    Action("rotate", "new secrets for the running stack, applied and its holders restarted; runs keep going",
           "secrets_cmds:cmd_rotate", (
               Arg("names", nargs="*", metavar="NAME", help=f"one or more of: {', '.join(ROTATABLE)}"),
               Arg("--all", action="store_true", help="every secret (the embedded data stores' included)"),
               Arg("--jwt-grace", type=int, metavar="SECONDS",
                   help="how long the old JWT public key stays trusted (default: the longest token lifetime)"),
               Arg("--drain-timeout", type=int, metavar="SECONDS",
                   help="how long a worker's running tasks may take before its restart (default 3600)"),
               Arg("--drop-old-jwt-keys", action="store_true",
                   help="forget old JWT keys whose grace is over (restarts the api-server)"),
               TIMEOUT.but(help="seconds each restart may take to be healthy (default 180)"),
               *formats("text", "json", help="json: the result on stdout"))),
), default="show", metavar="[show | rotate NAME... | rotate --all]")

_CONN_ID = Arg("conn_id", metavar="ID", help="the connection id (letters, digits, _ . -)")
CONNECTIONS = Group("connections", "Airflow connections (encrypted at rest): add, list, get, remove, import, export", (
    Action("add", "add one: flags or a URI; the password from a file, stdin or a prompt", "secrets_cmds:cmd_conn_add", (
        _CONN_ID, Arg("--uri", help="type://login@host:port/schema?extra (no password in it)"),
        Arg("--type", dest="conn_type", help="the connection type (`connections types`)"),
        Arg("--host"), Arg("--port", type=int), Arg("--login"), Arg("--schema"), Arg("--description"),
        Arg("--extra", help="a JSON object"),
        Arg("--password-file", metavar="FILE", exclusive="password", help="the password: first line of FILE (- : stdin)"),
        Arg("--password-prompt", action="store_true", exclusive="password", help="ask for the password"),
        *formats("text", "json")), audited=True),
    Action("list", "every connection (passwords masked)", "secrets_cmds:cmd_conn_list", formats("text", "json")),
    Action("get", "one connection", "secrets_cmds:cmd_conn_get", (
        _CONN_ID, Arg("--show-secrets", action="store_true", help="print the password instead of ********"),
        *formats("text", "json"))),
    Action("remove", "delete one", "secrets_cmds:cmd_conn_remove", (_CONN_ID,), audited=True),
    Action("import", "add every connection of a JSON file (all or none)", "secrets_cmds:cmd_conn_import", (
        Arg("file", metavar="FILE", help="as `connections export` writes it"), *formats("text", "json")), audited=True),
    Action("export", "every connection, passwords included, to a new 0600 JSON file", "secrets_cmds:cmd_conn_export", (
        Arg("file", metavar="FILE"), FORCE.but(help="replace FILE"))),
    Action("types", "the connection types the installed providers offer", "secrets_cmds:cmd_conn_types",
           formats("text", "json")),
))

CONTENT = Group("content", "DAG files and runs: add, list, get, remove, execute", (
    Action("add", "validate, place atomically, wait until registered", "content:cmd_add", (
        Arg("path", nargs="?", metavar="FILE", help="the same as --file"),
        Arg("--file", help="a .py file, a folder of DAG files or a .zip bundle"),
        Arg("--name", help="the file name in the dags folder"),
        Arg("--team", metavar="TEAM", help="into the team's folder dags/teams/TEAM/ (`./cli.sh teams add`)"),
        Arg("--type", help="accepted for the contract (dag)"),
        FORCE.but(help="replace an existing file"),
        Arg("--no-wait", action="store_true", help="do not wait for the DAG processor"),
        TIMEOUT.but(help="seconds to wait for the DAG processor (default 120)"))),
    Action("list", "DAGs, last runs, import errors", "content:cmd_list", (
        *formats("text", "json", "yaml"), Arg("--filter", metavar="TEXT", help="only DAGs whose id contains TEXT"))),
    Action("get", "a DAG's details and source", "content:cmd_get", (*NAME, OUTPUT.but(help="write the source to FILE"))),
    Action("remove", "delete a DAG's file", "content:cmd_remove", (
        *NAME, FORCE.but(help="a file that holds several DAGs"),
        Arg("--purge", action="store_true", help="also delete the DAG's run history"))),
    Action("execute", "trigger a run; --wait follows each task", "content:cmd_execute", (
        *NAME, CONF, Arg("--options", help=argparse.SUPPRESS), PARAM, WAIT_RUN, _RUN_TIMEOUT)),
))

DAGS = Group("dags", "operate DAGs: pause, unpause, clear (re-run failed tasks), backfill, test locally", (
    Action("pause", "pause a DAG", "content:cmd_pause", NAME),
    Action("unpause", "unpause a DAG", "content:cmd_unpause", NAME),
    Action("clear", "re-run a run's failed tasks", "content:cmd_clear", (
        *NAME, Arg("--run", help="the run id (default: the latest run)"),
        Arg("--all-tasks", action="store_true", help="every task, not only the failed ones"), WAIT_RUN, _RUN_TIMEOUT)),
    Action("backfill", "runs for past dates", "content:cmd_backfill", (
        *NAME, Arg("--from", dest="start", help="first date (YYYY-MM-DD)"),
        Arg("--to", dest="end", help="last date (YYYY-MM-DD)"),
        Arg("--reprocess", choices=("none", "failed", "completed"), default="none",
            help="which existing runs to run again"), WAIT_RUN, _RUN_TIMEOUT)),
    Action("test", "run a DAG in-process, no stack needed", "content:cmd_test", (
        *NAME, CONF, PARAM, Arg("--file", help="a DAG file to test instead of the dags folder"))),
))

BACKUP = Group("backup", "back up and restore the database, DAGs, plugins, config and secrets", (
    Action("create", "database, DAGs, plugins, config, encrypted secrets", "backup:cmd_create", (
        OUTPUT.but(help="the archive to write (default <home>/backups/airflow-backup-<time>.tar.gz)"),
        Arg("--no-secrets", action="store_true", exclusive="secrets", help="leave secrets.env out of the archive"),
        PASSPHRASE_FILE)),
    Action("list", "the archives in <home>/backups", "backup:cmd_list", formats("text", "json")),
    Action("restore", "into a stopped or fresh home", "backup:cmd_restore", (
        Arg("file", nargs="?", help="the archive"), PASSPHRASE_FILE,
        FORCE.but(help="replace the database a stopped home already holds"),
        Arg("--accept-settings", action="store_true", help="take the archive's resource.toml even where it "
            "changes a path, a user or a program (venv, service_user, dags_dir, URLs, Airflow options)"),
        Arg("--allow-unauthenticated", action="store_true",
            help="restore an archive whose manifest has no tag this home can check (made before backups were "
                 "authenticated, or without a passphrase by another home); warns"))),
))

BENCH = Action("bench", "benchmark a fresh stack in a temporary home: starts, latency, throughput, memory",
               "info:cmd_bench", (
                   Arg("--quick", action="store_true", help="small sizes: proves the harness works (used in CI)"),
                   OUTPUT.but(help="write the figures as JSON to FILE"),
                   Arg("--keep", action="store_true", help="keep the temporary home afterwards"),
                   Arg("--baseline", action="store_true", help="then run the same workloads against `airflow "
                       "standalone` from the same venv and show the ratio"),
                   Arg("--only", metavar="PARTS", help="a comma list of the parts to run (the first start always "
                       "runs): starts, idle, latency, fanout, big, items, memory, scale, files, probes, queries, "
                       "scheduling"),
                   Arg("--airflow-option", action="append", metavar="AIRFLOW__SECTION__KEY=VALUE",
                       help="an Airflow option for the bench's stack (repeatable): an A/B run; --set NAME=VALUE "
                            "sets a resource setting (e.g. profile=quiet) the same way")))

_USER = Arg("username", nargs="?", metavar="USER", help="the user name")
_PASSWORD = (Arg("--password-file", metavar="FILE", exclusive="password",
                 help="read the password from the first line of FILE (default: ask twice on the terminal)"),
             Arg("--password-stdin", action="store_true", exclusive="password",
                 help="read the password from standard input"))
_TEAM = Arg("team", metavar="TEAM", help="the team name")
USERS = Group("users", "UI/REST users of the FAB auth manager: add, list, remove, set-password, set-roles", (
    Action("add", "add a user (the password is asked, or read from a file or stdin)", "users:cmd_users_add", (
        _USER, Arg("--role", action="append", metavar="ROLE", help="a role (repeatable; default Viewer)"),
        Arg("--email", help="default USER@localhost"), Arg("--first-name"), Arg("--last-name"), *_PASSWORD),
        audited=True),
    Action("list", "users and their roles", "users:cmd_users_list", formats("text", "json")),
    Action("remove", "remove a user", "users:cmd_users_remove", (_USER,), audited=True),
    Action("set-password", "change a user's password (ends the user's sessions)", "users:cmd_users_set_password",
           (_USER, *_PASSWORD), audited=True),
    Action("set-roles", "give a user exactly these roles", "users:cmd_users_set_roles", (
        _USER, Arg("roles", nargs="*", metavar="ROLE", help="the roles, e.g. Viewer team-analytics")), audited=True),
))
ROLES = Group("roles", "FAB roles: list, add, grant a permission", (
    Action("list", "roles, their users and permissions (json: every permission)", "users:cmd_roles_list",
           formats("text", "json")),
    Action("add", "add a role, empty or a copy of another", "users:cmd_roles_add", (
        Arg("name", metavar="ROLE"), Arg("--copy-from", metavar="ROLE", help="start from this role's permissions")),
        audited=True),
    Action("grant", "grant a role one permission, e.g. can_read Connections", "users:cmd_roles_grant", (
        Arg("name", metavar="ROLE"), Arg("permission", metavar="ACTION", help="e.g. can_read, can_edit"),
        Arg("resource", metavar="RESOURCE", help="e.g. Connections, or DAG:<dag_id> (quote names with spaces)")),
        audited=True),
))
TEAMS = Group("teams", "DAG-level isolation: a role team-NAME and a DAG folder dags/teams/NAME/ per team", (
    Action("add", "add a team: its role and DAG folder", "users:cmd_teams_add", (_TEAM,), audited=True),
    Action("list", "teams, their DAGs and users", "users:cmd_teams_list", formats("text", "json")),
    Action("remove", "remove a team's role (its DAGs stay, the admin's alone)", "users:cmd_teams_remove", (_TEAM,),
        audited=True),
    Action("add-user", "put a user in a team", "users:cmd_teams_add_user", (_TEAM, _USER), audited=True),
    Action("remove-user", "take a user out of a team", "users:cmd_teams_remove_user", (_TEAM, _USER), audited=True),
    Action("sync", "derive every team's permissions again from its DAG folder", "users:cmd_teams_sync", audited=True),
))

TEST_PHASES = {"smoke": "the quick checks of a running stack", "integration": "the commands against a real stack",
               "unit": "no stack needed", "e2e": "the UI in a browser", "all": "unit, smoke, integration and e2e",
               "long": "faults, a second stack, the standalone baseline"}
TEST = Group("test", "run the test suite: smoke, integration, unit, e2e (browser) or all",
             tuple(Action(phase, text, "info:cmd_test") for phase, text in TEST_PHASES.items()), metavar="PHASE")

AUDIT = Action("audit", "Airflow's event log: the resource's actions, failed logins, triggers, changes",
               "audit:cmd_audit", (
                   Arg("--since", help="only events since, e.g. 30m, 2h, 3d or 2026-11-25T08:00 (UTC)"),
                   Arg("--until", help="only events before, in the same forms"),
                   Arg("--user", help="only this user (the OS user for the resource's actions, the name tried "
                       "for failed logins)"),
                   Arg("--dag", help="only this DAG"),
                   Arg("--event", help="only this event, e.g. resource.content.add; resource.* for a prefix"),
                   Arg("--limit", type=int, default=50, help="the newest N events (default 50)"),
                   *formats("text", "json", help="json for programs")))

COMMANDS: tuple[Command, ...] = (
    Action("help", "show usage, examples and the default configuration", "info:cmd_help"),
    Action("info", "what this resource is (config/runtime.json)", "info:cmd_info", formats("text", "json")),
    MANAGE, STATUS, LOGS, CREDENTIALS, CONNECTIONS, CONTENT, DAGS, BACKUP, AUDIT, BENCH, TEST, USERS, ROLES, TEAMS,
)
