"""Writing the resource's actions into Airflow's event log (the `log` table that /api/v2/eventLogs
reads): one INSERT as the metadata database's owner role, from the CLI, which holds its password.

There is no REST POST for event logs. Airflow's own Log model would need a one-off process of the
venv (importing Airflow: ~4 s of CPU per action, measured in docs/audit.md); the row it writes is
the same plain INSERT of the columns below (Log.__init__ sets dttm, event, owner, extra), which takes
a few milliseconds. The columns are those of Airflow 3's `log` table; a schema without them makes
the write fail, which is reported, never fatal.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import socket
from pathlib import Path
from typing import Any, Iterator

from airflow_resource import printer
from airflow_resource import safe_files
from airflow_resource.config import airflow_config
from airflow_resource.config import secrets as secrets_mod
from airflow_resource.config.settings import Settings
from airflow_resource.errors import CommandError

EVENT_CHARS = 60      # log.event is VARCHAR(60)
OWNER_CHARS = 500     # log.owner
PENDING_FILE = "audit-pending.jsonl"  # in run/ (root's): records made while the database was down
PENDING_MAX_BYTES = 1 << 20
CONNECT_TIMEOUT_S = 3
INSERT = ("INSERT INTO log (dttm, event, owner, owner_display_name, extra, dag_id) "
          "VALUES (COALESCE(%s::timestamptz, now()), %s, %s, %s, %s, %s)")

# The resource's own events (others add theirs: any `resource.<command>.<action>` name).
CONTENT_ADD, CONTENT_REMOVE = "resource.content.add", "resource.content.remove"
BACKUP_RESTORE = "resource.backup.restore"
MANAGE_SCALE, MANAGE_UPGRADE, MANAGE_ROLLBACK = "resource.manage.scale", "resource.manage.upgrade", "resource.manage.rollback"


def os_user() -> dict[str, Any]:
    """Who runs the CLI: the user sudo was called by when root runs it through sudo (SUDO_USER, which
    only counts under root: anyone else could set it), else the user of the process; the login user
    the kernel keeps for the session (/proc/self/loginuid, unchanged by su and sudo) when it differs."""
    uid = os.getuid()
    name = _user_name(uid)
    who: dict[str, Any] = {"user": name, "uid": uid}
    if uid == 0 and os.environ.get("SUDO_USER"):
        who.update(user=os.environ["SUDO_USER"], via="sudo")
    login = _login_user()
    if login and login != who["user"]:
        who["login_user"] = login
    return who


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _login_user() -> str | None:
    try:
        raw = Path("/proc/self/loginuid").read_text().strip()
    except OSError:
        return None
    if not raw.isdigit() or int(raw) == 0xFFFFFFFF:  # unset: no login session (a daemon, a container)
        return None
    return _user_name(int(raw))


def row(event: str, details: dict[str, Any], when: str | None = None) -> dict[str, Any]:
    """The values of one event-log row for an action of the CLI."""
    if not event or len(event) > EVENT_CHARS:
        raise ValueError(f"an event name has 1 to {EVENT_CHARS} characters: {event!r}")
    who = {**os_user(), "host": socket.gethostname(), "source": "resource-apache-airflow"}
    dag_id = details.pop("dag_id", None)
    clash = sorted(set(details) & set(who))
    if clash:  # who made the change and what it was about are both kept: a subject must not hide its maker
        raise ValueError(f"{event}: {clash} name who made the change; name the subject otherwise (e.g. account)")
    extra = {**{k: v for k, v in details.items() if v is not None}, **who}
    owner = str(who["user"])[:OWNER_CHARS]
    return {"when": when, "event": event, "owner": owner, "owner_display_name": f"{owner} (OS user, resource CLI)",
            "extra": json.dumps(extra, sort_keys=True, default=str), "dag_id": dag_id}


def _settings(where: Any) -> Settings:
    return getattr(where, "s", where)


def _insert(s: Settings, rows: list[dict[str, Any]]) -> None:
    import psycopg2

    sec = secrets_mod.require_installed(s)
    dsn = airflow_config.postgres_url(s, sec, driver="postgresql")
    conn = psycopg2.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S, application_name="resource-audit")
    try:
        with conn, conn.cursor() as cur:
            for r in rows:
                cur.execute(INSERT, (r["when"], r["event"], r["owner"], r["owner_display_name"], r["extra"],
                                     r["dag_id"]))
    finally:
        conn.close()


def record(where: Any, event: str, **details: Any) -> bool:
    """Write one event (`where`: Settings or a Stack) into the event log; True when it is there now.

    Never raises for the database: a stack whose database is down gets the record kept for its next
    start (flush_pending), and a failure of that is a warning. A bad event name raises ValueError (a
    caller's bug)."""
    s = _settings(where)
    values = row(event, dict(details))
    try:
        _insert(s, [values])
        return True
    except Exception as exc:  # noqa: BLE001 - an action must not fail because its record did
        reason = f"{exc.__class__.__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    values["when"] = _now()
    try:
        _append_pending(s, values)
        printer.info(f"audit: {event} kept in {s.run_dir / PENDING_FILE} until the next start ({reason})")
    except Exception as exc:  # noqa: BLE001
        printer.warn(f"audit: could not record {event} in the event log ({reason}) nor keep it ({exc})")
    return False


@contextlib.contextmanager
def action(where: Any, event: str, **details: Any) -> Iterator[dict[str, Any]]:
    """Record `event` after the block: outcome "ok", or "failed" with the error (then re-raised). The
    block may add details to the dict it gets."""
    extra = dict(details)
    try:
        yield extra
    except BaseException as exc:
        if not isinstance(exc, GeneratorExit):
            # refused: the command turned the request down (bad input, already so), nothing changed
            outcome = ("refused" if isinstance(exc, CommandError) else
                       "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
            record(where, event, outcome=outcome, error=str(exc)[:500] or exc.__class__.__name__, **extra)
        raise
    record(where, event, outcome="ok", **extra)


def flush_pending(where: Any) -> int:
    """Write the records kept while the database was down (start calls it once the database is up);
    the file goes once they are in. Returns how many."""
    s = _settings(where)
    path = s.run_dir / PENDING_FILE
    if not path.exists():
        return 0
    try:
        rows = [json.loads(line) for line in safe_files.read_file(path, PENDING_MAX_BYTES).decode().splitlines()
                if line.strip()]
        _insert(s, rows)
    except Exception as exc:  # noqa: BLE001
        printer.warn(f"audit: could not write the kept records of {path} into the event log ({exc}); "
                     "they stay for the next start")
        return 0
    safe_files.remove(path)
    printer.ok(f"audit: {len(rows)} record(s) kept while the database was down written into the event log")
    return len(rows)


def _append_pending(s: Settings, values: dict[str, Any]) -> None:
    path = s.run_dir / PENDING_FILE
    if s.home.is_dir() and not os.path.lexists(s.run_dir):  # a home restored fresh: root's alone until a start
        safe_files.ensure_dir(s.run_dir, 0o700)             # gives it its layout (home_layout)
    old = safe_files.read_file(path, PENDING_MAX_BYTES).decode() if path.exists() else ""
    safe_files.write_file(path, old + json.dumps(values, sort_keys=True) + "\n", 0o600)


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat()
