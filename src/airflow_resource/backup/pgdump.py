"""pg_dump and pg_restore of the stack's databases, and a short-lived PostgreSQL for backups and restores.

The superuser's password reaches pg_dump/pg_restore through a 0600 PGPASSFILE, never argv.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

from airflow_resource.config import airflow_config
from airflow_resource.stack import datastores
from airflow_resource.stack import system
from airflow_resource.errors import CommandError
from airflow_resource import safe_files
from airflow_resource.config.secrets import Secrets, write_private
from airflow_resource.stack.system import RunAs

DATABASES = (airflow_config.AIRFLOW_DB, airflow_config.DATA_DB)
DUMP_TIMEOUT_S = 3600
SERVER_READY_TIMEOUT_S = 60
SERVER_STOP_TIMEOUT_S = 30
POLL_S = 0.2
ERROR_TAIL_CHARS = 1500


def pg_bindir() -> Path:
    found = system.pg_bindir()
    if found is None:
        raise CommandError("PostgreSQL's programs (pg_dump, pg_restore, postgres) are not installed",
                           "install them (Debian/Ubuntu: apt-get install postgresql), or run `./cli.sh manage install`")
    return found


def _pgpass_line(port: int, password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"127.0.0.1:{port}:*:{datastores.PG_SUPERUSER}:{escaped}\n"


@contextlib.contextmanager
def _client_env(port: int, sec: Secrets) -> Iterator[dict[str, str]]:
    """Environment for pg_dump/pg_restore: the password in a private PGPASSFILE that lives for the call."""
    with tempfile.TemporaryDirectory(prefix="af-pgpass-") as tmp:
        passfile = Path(tmp) / "pgpass"
        write_private(passfile, _pgpass_line(port, sec.postgres_superuser_password))
        yield {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "PGPASSFILE": str(passfile),
               "PGCONNECT_TIMEOUT": "5"}


def _connection_args(port: int) -> list[str]:
    return ["--host=127.0.0.1", f"--port={port}", f"--username={datastores.PG_SUPERUSER}", "--no-password"]


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=DUMP_TIMEOUT_S)
    if proc.returncode != 0:
        raise CommandError(f"{what} failed: {(proc.stderr or proc.stdout).strip()[-ERROR_TAIL_CHARS:]}",
                           "see the message above; nothing was replaced")


def dump(port: int, sec: Secrets, database: str, out: Path) -> None:
    """pg_dump's custom format: one snapshot (repeatable read), so consistent while the stack writes."""
    with _client_env(port, sec) as env:
        _run([str(pg_bindir() / "pg_dump"), *_connection_args(port), "--format=custom",
              f"--file={out}", f"--dbname={database}"], env, f"pg_dump of {database}")


def restore(port: int, sec: Secrets, database: str, dump_file: Path) -> None:
    """Into an empty database, all or nothing; objects owned by the airflow role as at install."""
    with _client_env(port, sec) as env:
        _run([str(pg_bindir() / "pg_restore"), *_connection_args(port), f"--dbname={database}",
              "--no-owner", f"--role={airflow_config.AIRFLOW_DB_USER}", "--single-transaction", "--exit-on-error",
              str(dump_file)], env, f"pg_restore of {database}")


def data_owner(data_dir: Path, fallback: RunAs) -> RunAs:
    """PostgreSQL runs as the owner of its data directory (it refuses any other): under root, the data user
    (a home of an older version: the service user, until `manage start` hands the folder over)."""
    if not system.is_root():
        return fallback
    st = os.stat(data_dir)
    if st.st_uid == 0:
        raise CommandError(f"{data_dir} belongs to root; PostgreSQL refuses to run as root",
                           "run `./cli.sh manage start` (it hands the folder to the data user), then try again")
    try:
        name = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        name = str(st.st_uid)
    return RunAs(name, st.st_uid, st.st_gid, "/")


@contextlib.contextmanager
def temporary_server(data_dir: Path, sec: Secrets, who: RunAs) -> Iterator[int]:
    """PostgreSQL on data_dir on a free loopback port, as the service user, stopped (fast shutdown) on exit.

    PostgreSQL's own lock (postmaster.pid) refuses a second server on the same data dir."""
    root = system.is_root()
    who = data_owner(data_dir, who)
    port = system.free_port()
    with tempfile.TemporaryDirectory(prefix="af-pg-") as sock_dir:
        if root:
            safe_files.set_owner(sock_dir, who.uid, who.gid)
        log_path = Path(sock_dir) / "postgres.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [str(pg_bindir() / "postgres"), "-D", str(data_dir), "-p", str(port), "-k", sock_dir,
                 "-c", "listen_addresses=127.0.0.1"],
                stdout=log, stderr=subprocess.STDOUT, cwd=sock_dir, start_new_session=True,
                **who.popen_kwargs(),
            )
        try:
            _wait_ready(proc, port, sec, log_path)
            yield port
        finally:
            _stop(proc)


def _wait_ready(proc: subprocess.Popen, port: int, sec: Secrets, log_path: Path) -> None:
    import psycopg2

    deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise CommandError(f"PostgreSQL did not start: {log_path.read_text(errors='replace')[-ERROR_TAIL_CHARS:]}",
                               "is the stack (or another server on this data directory) still running?")
        try:
            psycopg2.connect(host="127.0.0.1", port=port, user=datastores.PG_SUPERUSER, dbname="postgres",
                             password=sec.postgres_superuser_password, connect_timeout=2).close()
            return
        except psycopg2.OperationalError as exc:
            if time.monotonic() > deadline:
                raise CommandError(f"PostgreSQL did not accept connections within {SERVER_READY_TIMEOUT_S} s: "
                                   f"{str(exc).strip()}", "see the PostgreSQL messages above") from None
        time.sleep(POLL_S)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # fast shutdown: a clean checkpoint, no recovery at the next start
        try:
            proc.wait(SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(SERVER_STOP_TIMEOUT_S)
