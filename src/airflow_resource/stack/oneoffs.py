"""The one-off work of a start beside the supervised components: the metadata database's migration,
the public JWKS, the admin and housekeeper users and the connection resource_postgres, Celery messages
orphaned by dead workers, the Execution API's warm-up."""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor

from airflow_resource import printer
from airflow_resource import standalone
from airflow_resource.config import airflow_config
from airflow_resource.config import jwks_trust
from airflow_resource.config import jwt_keys
from airflow_resource.config import tls
from airflow_resource.config import secrets as secrets_mod
from airflow_resource.config.settings import Settings
from airflow_resource.errors import CommandError
from airflow_resource.stack import components
from airflow_resource.stack import datastores
from airflow_resource.stack import installer
from airflow_resource.stack import probes
from airflow_resource.stack.handle import Stack

MIGRATE_TIMEOUT_S = 600
ADMIN_TIMEOUT_S = 180


def migrate(st: Stack) -> None:
    """Migrate the metadata database once per Airflow version (the venv's: a new pinned set migrates)."""
    s = st.s
    write_jwks(st)
    if s.embedded_postgres:
        datastores.ensure_roles_and_databases(s, st.sec)
    migrated = s.airflow_home / f".migrated-{installer.home_airflow_version(s)}"
    if not migrated.exists():
        t = time.monotonic()
        with printer.status("migrating the Airflow metadata database (first start: up to a minute)"):
            proc = st.run_airflow([str(s.venv / "bin" / "airflow"), "db", "migrate"], MIGRATE_TIMEOUT_S)
        if proc.returncode != 0:
            raise CommandError("airflow db migrate failed:\n" + (proc.stderr or proc.stdout).strip()[-2000:],
                               "fix the error above, then run `./cli.sh manage start` again")
        migrated.write_text(f"{time.time()}\n")
        st.migrate_s = time.monotonic() - t
        printer.ok(f"metadata database migrated ({st.migrate_s:.1f} s)")


def restore_unacked_tasks(st: Stack) -> int:
    """Put back in their queue the Celery messages a dead worker had taken but not acknowledged.

    Workers acknowledge a task only after it ran (Airflow's task_acks_late), so a worker killed with
    tasks it had reserved leaves them in Redis' `unacked` set, where kombu restores them only after
    the broker's visibility timeout (Airflow: 24 h): their task instances stay queued until the
    scheduler's task_queued_timeout (600 s). At start no worker of this stack runs, so every
    unacknowledged message is orphaned: kombu's own restore, with a visibility timeout of 0, puts
    them back now. A message whose task has meanwhile run is refused by the Execution API (the task
    instance is no longer queued) and costs nothing. Only the embedded Redis: an external one may
    serve workers of another stack that are running."""
    if not st.s.embedded_redis:
        return 0
    from kombu import Connection

    try:
        with Connection(airflow_config.redis_url(st.s, st.sec), transport_options={"visibility_timeout": 0},
                        connect_timeout=5) as conn:
            channel = conn.default_channel
            count = channel.client.zcard(channel.unacked_index_key)
            if count:
                channel.qos.restore_visible(num=count, interval=1)
    except Exception as exc:  # noqa: BLE001 - never block a start on it: the scheduler's timeout still acts
        printer.warn(f"could not put back unacknowledged Celery tasks ({exc.__class__.__name__}: {exc}); "
                     "their task instances are queued again after the scheduler's task_queued_timeout")
        return 0
    if count:
        printer.ok(f"{count} Celery task(s) taken by workers that died put back in the queue")
    return count


def write_jwks(st: Stack) -> None:
    """The public half of the JWT key pair, where every component verifies tokens ([api_auth]
    trusted_jwks_url). Rewritten at every start: an older home's first start generates the pair (tokens
    signed with its former jwt_secret are refused from then on); keys a rotation retired stay until
    their grace is over (jwks_trust.py)."""
    jwks_trust.write(airflow_config.jwks_file(st.s), st.sec.jwt_private_key)


def create_admin(st: Stack) -> None:
    """Create the admin, the housekeeper's least-privilege user and the connection resource_postgres (a
    one-off process; it needs the migrated database, not the servers). Runs again when any of them
    changed: another admin name, the housekeeper's role, the connection's URL (by its digest)."""
    s = st.s
    data_url = airflow_config.data_url(s, st.sec)
    digest = hashlib.sha256("\0".join([s.admin_user, components.HOUSEKEEPER_USER, HOUSEKEEPER_ROLE_VERSION,
                                        data_url]).encode()).hexdigest()[:16]
    admin_marker, done_marker = s.airflow_home / f".admin-{s.admin_user}", s.airflow_home / f".users-{digest}"
    if admin_marker.exists() and done_marker.exists():
        return
    t = time.monotonic()
    source = standalone.source("admin_user")
    proc = st.run_airflow(
        [str(s.venv / "bin" / "python"), "-"], ADMIN_TIMEOUT_S, stdin=source,
        extra_env={"APACHE_AIRFLOW_ADMIN_USER": s.admin_user, "APACHE_AIRFLOW_ADMIN_PASSWORD": st.sec.admin_password,
                   "APACHE_AIRFLOW_HOUSEKEEPER_USER": components.HOUSEKEEPER_USER,
                   "APACHE_AIRFLOW_HOUSEKEEPER_ROLE": components.HOUSEKEEPER_ROLE,
                   "APACHE_AIRFLOW_HOUSEKEEPER_PASSWORD": st.sec.housekeeper_password,
                   "APACHE_AIRFLOW_DATA_CONN_ID": airflow_config.DATA_CONN_ID,
                   "APACHE_AIRFLOW_DATA_CONN_URI": data_url},
    )
    if proc.returncode != 0:
        raise CommandError("creating the admin user failed:\n" + (proc.stderr or proc.stdout).strip()[-2000:],
                           "fix the error above, then run `./cli.sh manage start` again")
    admin_marker.write_text(f"{time.time()}\n")
    done_marker.write_text(f"{time.time()}\n")
    printer.ok(f"admin user {s.admin_user}, housekeeper user and connection {airflow_config.DATA_CONN_ID} "
               f"ready ({time.monotonic() - t:.1f} s)")


HOUSEKEEPER_ROLE_VERSION = "1"  # bump when admin_user.py's HOUSEKEEPER_PERMISSIONS change


def warm_execution_api(s: Settings, deadline: float) -> None:
    """Each api-server worker builds its Execution API (Cadwyn's versioned routes) on the first request
    it gets, seconds of CPU during which that worker answers nothing: the first task would wait for it.
    Concurrent requests reach every worker (a busy one accepts nothing), so build it now."""
    url = f"{s.api_url}/execution/health"
    ca = str(tls.ca_file(s)) if s.tls_on else None
    n = 2 * int({**airflow_config.tuning(s), **s.airflow_options}["AIRFLOW__API__WORKERS"])
    t = time.monotonic()

    def hit(_: int) -> int:
        try:
            return probes.http_get(url, timeout=max(1.0, deadline - time.monotonic()), ca_file=ca)[0]
        except OSError:
            return 0

    with ThreadPoolExecutor(max_workers=n) as pool:  # no spinner: it runs beside wait_ready's
        codes = list(pool.map(hit, range(n)))
    if all(c == 200 for c in codes):
        printer.ok(f"Execution API warm ({time.monotonic() - t:.1f} s)")
    else:
        printer.warn(f"Execution API warm-up answered {codes}: the first tasks may wait for it")
