"""Where each rotated secret lives, besides secrets.env and the components' env files: the embedded
PostgreSQL's roles, the embedded Redis' password, the FAB admin user and the connection resource_postgres,
the Fernet-encrypted rows, and the Celery workers that must finish their tasks before they restart.

Every function here is safe to repeat (`credentials rotate` resumes an interrupted rotation by running
its steps again): each takes the old and the new value and works whichever one the store holds now.
"""

from __future__ import annotations

import time
from typing import Any

from airflow_resource import printer
from airflow_resource import standalone
from airflow_resource.config import airflow_config
from airflow_resource.config.secrets import Secrets
from airflow_resource.errors import CommandError
from airflow_resource.stack import datastores
from airflow_resource.stack.handle import Stack

CONNECT_TIMEOUT_S = 5
ONEOFF_TIMEOUT_S = 300
DRAIN_POLL_S = 2.0


def _superuser(st: Stack, candidates: list[str]) -> Any:
    """A superuser connection with whichever of the passwords PostgreSQL takes now."""
    import dataclasses

    import psycopg2

    last: Exception | None = None
    for password in dict.fromkeys(p for p in candidates if p):
        sec = dataclasses.replace(st.sec, postgres_superuser_password=password)
        try:
            conn = psycopg2.connect(datastores.superuser_dsn(st.s, sec))
            conn.autocommit = True
            return conn
        except psycopg2.OperationalError as exc:
            last = exc
    raise CommandError(f"PostgreSQL refused the superuser with both the old and the new password ({last})",
                       "is PostgreSQL up? `./cli.sh status`; secrets.env and secrets.rotating.env hold the two "
                       "passwords")


def set_postgres_passwords(st: Stack, old: Secrets, new: Secrets) -> list[str]:
    """The metadata role, resource_data's role and the superuser get their new passwords (as SCRAM
    verifiers, never the password itself: no server log can show it). Sessions already open stay; every
    new login needs the new password."""
    from psycopg2 import sql
    from psycopg2.extensions import encrypt_password

    roles = [(airflow_config.AIRFLOW_DB_USER, new.postgres_password),
             (airflow_config.DATA_DB_USER, new.data_db_password),
             (datastores.PG_SUPERUSER, new.postgres_superuser_password)]  # last: we are logged in as it
    conn = _superuser(st, [old.postgres_superuser_password, new.postgres_superuser_password])
    try:
        with conn.cursor() as cur:
            for role, password in roles:
                verifier = encrypt_password(password, role, conn, "scram-sha-256")
                cur.execute(sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(role)), (verifier,))
    finally:
        conn.close()
    return [r for r, _ in roles]


def _redis(st: Stack, candidates: list[str]) -> Any:
    import redis

    last: Exception | None = None
    for password in dict.fromkeys(p for p in candidates if p):
        client = redis.Redis(host="127.0.0.1", port=st.s.redis_port, password=password,
                             socket_timeout=CONNECT_TIMEOUT_S, socket_connect_timeout=CONNECT_TIMEOUT_S)
        try:
            client.ping()
            return client
        except redis.AuthenticationError as exc:
            last = exc
            client.close()
    raise CommandError(f"Redis refused both the old and the new password ({last})",
                       "is Redis up? `./cli.sh status`; secrets.env and secrets.rotating.env hold the two passwords")


def redis_accept_both(st: Stack, old: str, new: str) -> None:
    """Redis 6+ keeps several passwords per ACL user: the default user takes the old and the new one, so
    a component holds a working password before and after its restart."""
    client = _redis(st, [old, new])
    try:
        client.execute_command("ACL", "SETUSER", "default", "on", f">{new}")
    finally:
        client.close()


def redis_only_new(st: Stack, old: str, new: str) -> None:
    """requirepass sets the default user's one password: the old one is refused from now on (redis.conf,
    read at Redis' next start, has the new one already)."""
    client = _redis(st, [new, old])
    try:
        client.config_set("requirepass", new)
    finally:
        client.close()


def set_admin_and_data_connection(st: Stack, data_connection: bool) -> None:
    """The FAB admin's password (st's: the new one when it is rotated, else the one it has) and, when asked,
    the connection resource_postgres (its role's new password), through standalone/admin_user.py as a
    one-off (the start's own), with the passwords in its environment, never argv. Runs with `st`'s secrets:
    the metadata role's current password and the Fernet key(s) the restarted components hold."""
    extra = {"APACHE_AIRFLOW_ADMIN_USER": st.s.admin_user, "APACHE_AIRFLOW_ADMIN_PASSWORD": st.sec.admin_password}
    if data_connection:
        extra.update({"APACHE_AIRFLOW_DATA_CONN_ID": airflow_config.DATA_CONN_ID,
                      "APACHE_AIRFLOW_DATA_CONN_URI": airflow_config.data_url(st.s, st.sec)})
    proc = st.run_airflow([str(st.s.venv / "bin" / "python"), "-"], ONEOFF_TIMEOUT_S,
                          stdin=standalone.source("admin_user"), extra_env=extra)
    if proc.returncode != 0:
        raise CommandError("setting the admin password / connection resource_postgres failed:\n"
                           + (proc.stderr or proc.stdout).strip()[-1500:])


def reencrypt_fernet(st: Stack) -> str:
    """`airflow rotate-fernet-key` with [core] fernet_key = new,old (st's): connections, variables, triggers
    and connection tests decrypted with either key and written again under the new one, in one transaction."""
    proc = st.run_airflow([str(st.s.venv / "bin" / "airflow"), "rotate-fernet-key"], ONEOFF_TIMEOUT_S)
    if proc.returncode != 0:
        raise CommandError("airflow rotate-fernet-key failed:\n" + (proc.stderr or proc.stdout).strip()[-1500:])
    return proc.stdout.strip()


def drain_worker(broker_url: str, hostname: str, timeout: float) -> int:
    """Stop a Celery worker taking new tasks and wait until its running ones are done, so its restart
    (warm shutdown, bounded by the stop grace) kills none. Returns the tasks still active at the timeout."""
    from celery import Celery

    app = Celery(broker=broker_url)
    app.conf.broker_connection_retry_on_startup = False
    try:
        queues = (app.control.inspect([hostname], timeout=3).active_queues() or {}).get(hostname) or []
        for q in queues:
            app.control.cancel_consumer(q["name"], destination=[hostname], reply=True, timeout=3)
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            active = (app.control.inspect([hostname], timeout=3).active() or {}).get(hostname, [])
            if not active:
                return 0
            if time.monotonic() > deadline:
                return len(active)
            if not announced:
                printer.step(f"{hostname}: waiting for {len(active)} running task(s) to finish before its restart")
                announced = True
            time.sleep(DRAIN_POLL_S)
    finally:
        app.close()


def wait_for_task_heartbeats(st: Stack, since: float, timeout: float) -> int:
    """Wait until every running task instance has heartbeated since `since` (the api-server's return), so
    the scheduler, started next, does not fail a task whose heartbeats only the restart held up (Airflow
    fails one silent for [scheduler] task_instance_heartbeat_timeout: 60 s here). Returns those still
    silent at the timeout."""
    import datetime

    import psycopg2

    cutoff = datetime.datetime.fromtimestamp(since, datetime.timezone.utc)
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        with psycopg2.connect(airflow_config.postgres_url(st.s, st.sec, driver="postgresql"),
                              connect_timeout=CONNECT_TIMEOUT_S) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM task_instance WHERE state = 'running' "
                        "AND (last_heartbeat_at IS NULL OR last_heartbeat_at < %s)", (cutoff,))
            silent = cur.fetchone()[0]
        conn.close()
        if not silent or time.monotonic() > deadline:
            return silent
        if not announced:
            printer.step(f"waiting for {silent} running task(s) to heartbeat again before the scheduler starts")
            announced = True
        time.sleep(DRAIN_POLL_S)
