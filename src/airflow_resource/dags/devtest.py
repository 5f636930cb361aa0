"""Run one DAG locally with `airflow dags test` (dag.test()): no running stack needed.

Each task runs in-process (dag.test() talks to an in-process Execution API, no executor, no
scheduler, no api-server), against a throw-away SQLite metadata database kept in a work
directory. The database is migrated once and reused: `airflow db migrate` runs only when the
work directory has no database yet or the installed Airflow version changed (then the old
database is discarded: it is throw-away, and a downgrade could not migrate it).

Everything that ties a child to the stack is stripped from the environment it is given:
CeleryExecutor and its broker, the PostgreSQL metadata database, the api-server, scheduler and
log-server ports, the auth manager, and the stack's process marker (so `./cli.sh manage stop` never
mistakes a local test for a leftover of the stack). Connections and Variables given as
AIRFLOW_CONN_* / AIRFLOW_VAR_* the caller set stay, as does the plugins folder; no generated secret
of the stack (Fernet key, passwords, keys) reaches the child: its DAG code is untrusted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

from airflow_resource import printer
from airflow_resource import safe_files
from airflow_resource.stack import system
from airflow_resource.errors import CommandError

DB_NAME = "airflow.db"
VERSION_MARKER = ".airflow-version"
LOCK_NAME = ".lock"
MIGRATE_TIMEOUT_S = 600
WORK_DIR_NAME = "dags-test"  # under the resource home

# Sections and keys of the stack's environment a local test must not inherit.
STRIP_PREFIXES = (
    "AIRFLOW__CELERY__",
    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__",
    "AIRFLOW__DATABASE__",
    "AIRFLOW__API__",
    "AIRFLOW__API_AUTH__",
    "AIRFLOW__SCHEDULER__",
    "AIRFLOW__DAG_PROCESSOR__",
    "AIRFLOW__LOGGING__",
)
STRIP_KEYS = (
    "AIRFLOW_HOME",
    "AIRFLOW_CONFIG",
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__CORE__AUTH_MANAGER",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "APACHE_AIRFLOW_RESOURCE_HOME",  # launch.HOME_ENV: the marker `./cli.sh manage stop` kills by
)


def dags_test_env(env: dict[str, str], dags_folder: Path, work_dir: Path) -> dict[str, str]:
    """The environment of `airflow dags test`: the given one without the stack, plus the local settings."""
    from airflow_resource.config import airflow_config

    env = airflow_config.without_secrets(env)
    clean = {k: v for k, v in env.items() if k not in STRIP_KEYS and not k.startswith(STRIP_PREFIXES)}
    clean.update({
        "AIRFLOW_HOME": str(work_dir),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{work_dir / DB_NAME}",
        # No executor ever starts: dag.test() runs each task in this process (without --use-executor).
        # Airflow still reads the setting; LocalExecutor is its default and needs no broker.
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(work_dir / "logs"),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ left in the author's folder
    })
    return clean


def airflow_version(python: Path, env: dict[str, str] | None = None) -> str:
    """The Airflow version installed in the venv of this interpreter."""
    proc = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('apache-airflow'))"],
        capture_output=True, text=True, timeout=60, env={"PATH": (env or {}).get("PATH", os.defpath)},
    )
    if proc.returncode != 0:
        raise CommandError(f"Airflow is not installed for {python}: {proc.stderr.strip()[-300:]}",
                           "run `./cli.sh manage install`")
    return proc.stdout.strip()


@contextlib.contextmanager
def _locked(work_dir: Path, user: system.RunAs | None = None) -> Iterator[None]:
    """One migration at a time per work directory (two terminals testing at once)."""
    # The work directory is the service user's: open the lock without following a link planted there.
    fd = os.open(work_dir / LOCK_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK
                 | os.O_CLOEXEC, 0o644)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise safe_files.refuse(work_dir / LOCK_NAME, "not a plain file")
    if user is not None and system.is_root():
        os.fchown(fd, user.uid, user.gid)
    with os.fdopen(fd, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run_kw(user: system.RunAs | None) -> dict[str, Any]:
    return user.popen_kwargs() if user is not None else {}


def ensure_db(python: Path, airflow_bin: Path, env: dict[str, str], work_dir: Path,
              user: system.RunAs | None = None) -> bool:
    """Migrate the throw-away database unless it exists for this Airflow version. True if it migrated."""
    version = airflow_version(python, env)
    work_dir.mkdir(parents=True, exist_ok=True)
    db, marker = work_dir / DB_NAME, work_dir / VERSION_MARKER
    with _locked(work_dir, user):
        if db.exists() and marker.exists() and marker.read_text().strip() == version:
            return False
        for stale in (db, marker):
            stale.unlink(missing_ok=True)
        t = time.monotonic()
        printer.step(f"creating a throw-away metadata database for Airflow {version} in {work_dir} (once)")
        try:
            proc = subprocess.run([str(airflow_bin), "db", "migrate"], env=env, cwd=work_dir, capture_output=True,
                                  text=True, timeout=MIGRATE_TIMEOUT_S, **_run_kw(user))
        except subprocess.TimeoutExpired:
            db.unlink(missing_ok=True)
            raise CommandError(f"airflow db migrate did not finish in {MIGRATE_TIMEOUT_S} s",
                               f"remove {work_dir} and try again") from None
        if proc.returncode != 0:
            db.unlink(missing_ok=True)
            raise CommandError("airflow db migrate failed:\n" + (proc.stderr or proc.stdout).strip()[-2000:],
                               f"fix the error above; {work_dir} can be removed safely")
        owner = (user.uid, user.gid) if user is not None and system.is_root() else (-1, -1)
        safe_files.write_file(marker, version + "\n", 0o644, *owner)
        printer.ok(f"metadata database ready ({time.monotonic() - t:.1f} s)")
        return True


def run_dag_test(python: Path, airflow_bin: Path, env: dict[str, str], dag_id: str, dags_folder: Path,
                 work_dir: Path, conf: dict[str, Any] | None = None, logical_date: str | None = None, *,
                 dagfile: Path | None = None, user: system.RunAs | None = None,
                 timeout_s: float | None = None) -> int:
    """Run one DagRun of dag_id in-process; output goes straight to the terminal.

    Returns the exit code of `airflow dags test`: 0 only if the DagRun succeeded (a failed run,
    a DAG that is missing or fails to import, or bad --conf JSON are all non-zero).
    dagfile: parse only this file (it must be inside dags_folder) instead of the whole folder.
    user: run as this account (the service user, when the caller is root).
    """
    dags_folder = Path(dags_folder).absolute()
    work_dir = Path(work_dir).absolute()
    if not dags_folder.is_dir():
        raise CommandError(f"dags folder {dags_folder} does not exist", "pass the folder with the DAG file")
    if user is not None:
        system.make_dir(work_dir, user)
    else:
        work_dir.mkdir(parents=True, exist_ok=True)
    child_env = dags_test_env(env, dags_folder, work_dir)
    ensure_db(python, airflow_bin, child_env, work_dir, user)
    cmd = [str(airflow_bin), "dags", "test", dag_id]
    if logical_date:
        cmd.append(logical_date)
    if conf:
        cmd += ["--conf", json.dumps(conf)]
    if dagfile is not None:
        cmd += ["--dagfile-path", str(Path(dagfile).absolute())]
    printer.step(f"running {dag_id} in-process (airflow dags test; no stack needed)")
    t = time.monotonic()
    try:
        proc = subprocess.run(cmd, env=child_env, cwd=work_dir, timeout=timeout_s, **_run_kw(user))
    except subprocess.TimeoutExpired:
        printer.warn(f"{dag_id}: dags test did not finish in {timeout_s:g} s; stopped it")
        return 124
    took = time.monotonic() - t
    if proc.returncode == 0:
        printer.ok(f"{dag_id}: the DagRun succeeded ({took:.1f} s)")
    else:
        printer.warn(f"{dag_id}: dags test exited with {proc.returncode} ({took:.1f} s)")
    return proc.returncode


def _stack_env(s: Any) -> dict[str, str]:
    """The stack's environment when it is installed (dags_test_env strips its secrets); else the bare minimum."""
    from airflow_resource.config import airflow_config
    from airflow_resource.stack import handle

    try:
        st = handle.Stack.load(s)
        return st.env()
    except CommandError:
        return {"PATH": airflow_config.child_path(s), "HOME": str(s.home), "LANG": "C.UTF-8",
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(s.plugins_dir)}


def cli_run(s: Any, dag_id: str, conf: dict[str, Any] | None, file: str | None,
            logical_date: str | None = None) -> int:
    """`./cli.sh dags test NAME [--file PATH]`: the stack's dags folder, or the folder of --file (parsing only it)."""
    python, airflow_bin = s.venv / "bin" / "python", s.venv / "bin" / "airflow"
    if not airflow_bin.exists():
        raise CommandError(f"Airflow is not installed in {s.venv}", "run `./cli.sh manage install`")
    dags_folder, dagfile = s.dags_dir, None
    if file:
        path = Path(file).expanduser().absolute()
        if not path.exists():
            raise CommandError(f"{path} does not exist", "pass the DAG file (or its folder) with --file")
        dags_folder, dagfile = (path, None) if path.is_dir() else (path.parent, path)
    user = system.run_as(s.service_user) if system.is_root() else None
    if user is not None:
        system.check_traversable(dags_folder, user)
    work_dir = s.home / WORK_DIR_NAME
    return run_dag_test(python, airflow_bin, _stack_env(s), dag_id, dags_folder, work_dir, conf, logical_date,
                        dagfile=dagfile, user=user)


def reset(work_dir: Path) -> None:
    """Throw the local database away (the next run migrates a fresh one)."""
    shutil.rmtree(work_dir, ignore_errors=True)
