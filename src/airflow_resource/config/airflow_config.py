"""Airflow's settings for every child, rendered as AIRFLOW__SECTION__KEY environment.

airflow.cfg is never hand-edited: everything the stack depends on is here, so
all components agree (one JWT key pair, one execution API URL, one database).
The environment has a shared part with no generated secret in it (shared_env) and one
part per secret (SECRET_KEYS); each component gets the parts the component table
grants it (for_component), DAG validation none.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from airflow_resource.in_airflow import alerts
from airflow_resource.errors import CommandError
from airflow_resource.config.secrets import Secrets, placeholder
from airflow_resource.config.settings import Settings
from airflow_resource.config import profiles, tls
from airflow_resource.config import venv as venv_contents

AIRFLOW_DB = "airflow"        # metadata database
AIRFLOW_DB_USER = "airflow"
DATA_DB = "resource_data"     # database for pipelines' own tables (connection resource_postgres)
DATA_DB_USER = "resource_data"  # its own role: no CONNECT on the metadata database
DATA_CONN_ID = "resource_postgres"
BROKER_DB, RESULT_DB = 0, 1   # Redis databases: Celery's queue, Celery's task results
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"

MIN_FILE_PROCESS_INTERVAL_S = 120
API_WORKERS = 2
EXECUTION_API_TIMEOUT_S = 30.0
STATSD_PREFIX = "airflow"  # the mapping file (airflow_resource/metrics/statsd_mapping.yml) expects it


def postgres_url(s: Settings, sec: Secrets, database: str = AIRFLOW_DB, driver: str = "postgresql+psycopg2") -> str:
    if s.postgres_url:
        # A server the user runs: metadata and pipelines' tables share the database it names.
        return _with_scheme(s.postgres_url, driver)
    user, password = (DATA_DB_USER, sec.data_db_password) if database == DATA_DB else (AIRFLOW_DB_USER, sec.postgres_password)
    return f"{driver}://{user}:{quote(password, safe='')}@127.0.0.1:{s.postgres_port}/{database}"


def data_url(s: Settings, sec: Secrets) -> str:
    """The connection resource_postgres: pipelines' own database, as its own role (stored in the metadata
    database by the start's one-offs, encrypted with the Fernet key; tasks get it through the Execution API)."""
    return postgres_url(s, sec, DATA_DB, driver="postgresql")


def redis_url(s: Settings, sec: Secrets, db: int = 0) -> str:
    if s.redis_url:
        return s.redis_url
    return f"redis://:{quote(sec.redis_password, safe='')}@127.0.0.1:{s.redis_port}/{db}"


def _with_scheme(url: str, scheme: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((scheme, *parts[1:]))


# Secret parts of the environment, by the name the component table grants them under (components.py).
SECRET_KEYS: dict[str, frozenset[str]] = {
    "metadata_db": frozenset({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"}),
    "fernet": frozenset({"AIRFLOW__CORE__FERNET_KEY"}),
    "broker": frozenset({"AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND"}),
    "api_secret_key": frozenset({"AIRFLOW__API__SECRET_KEY"}),
    "flower_auth": frozenset({"AIRFLOW__CELERY__FLOWER_BASIC_AUTH"}),
    "jwt_signing": frozenset({"AIRFLOW__API_AUTH__JWT_PRIVATE_KEY_PATH", "APACHE_AIRFLOW_MEMFD_VARS"}),
}
MEMFD_VARS_ENV = "APACHE_AIRFLOW_MEMFD_VARS"  # launch.py: these variables hold file content, handed over as memfds
# Where a component lacks the metadata part, Airflow still parses the option when it is imported (Airflow's
# own "airflow-db-not-allowed:///" fails there), and without it would fall back to a SQLite file in
# AIRFLOW_HOME: a valid URL that cannot connect (no such socket directory, no such role).
NO_METADATA_DB = "postgresql+psycopg2://no-metadata-access@/no-metadata-access?host=/nonexistent/no-metadata-access"
ONEOFF_PARTS = frozenset({"metadata_db", "fernet"})  # `airflow db migrate`, the users and the connection


def airflow_env(s: Settings, sec: Secrets, parts: frozenset[str] = frozenset(SECRET_KEYS)) -> dict[str, str]:
    """The environment of an Airflow process of the stack with the secret parts named (the default: all of
    them, which supervisor.component_env narrows to each component's), then the tuning and the user's own
    Airflow options. One-off commands of the CLI: oneoff_env."""
    owned = owned_env(s, sec, parts)
    check_options(s, owned_env(s, sec, frozenset(SECRET_KEYS)))
    return {**owned, **tuning(s), **s.airflow_options}


def oneoff_env(env: dict[str, str]) -> dict[str, str]:
    """What a one-off command run by the CLI (migrate, the users, the connection, requeue) needs of
    airflow_env's: the metadata database, the Fernet key and the broker; never the signing key."""
    return for_component(env, ONEOFF_PARTS | {"broker"})


def without_secrets(env: dict[str, str]) -> dict[str, str]:
    """`env` with no generated secret: no secret part, no APACHE_AIRFLOW_<secret> variable (secrets.env's
    names), for processes that run untrusted code (DAG validation, `dags test`)."""
    from dataclasses import fields

    names = {Secrets.env_name(f.name) for f in fields(Secrets)}
    return {k: v for k, v in for_component(env, frozenset()).items() if k not in names}


def for_component(env: dict[str, str], parts: frozenset[str]) -> dict[str, str]:
    """`env` (airflow_env's) without the secret parts not in `parts`."""
    drop = frozenset().union(*(keys for name, keys in SECRET_KEYS.items() if name not in parts))
    out = {k: v for k, v in env.items() if k not in drop}
    out.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", NO_METADATA_DB)
    return out


def secret_env(s: Settings, sec: Secrets) -> dict[str, dict[str, str]]:
    """Each secret part of the environment (SECRET_KEYS names its keys)."""
    from airflow_resource.config import jwt_keys

    parts = {
        "metadata_db": {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres_url(s, sec)},
        "fernet": {"AIRFLOW__CORE__FERNET_KEY": sec.fernet_key},
        # Results on Redis, not on the metadata database (whose owner role a worker would then hold).
        "broker": {"AIRFLOW__CELERY__BROKER_URL": redis_url(s, sec, BROKER_DB),
                   "AIRFLOW__CELERY__RESULT_BACKEND": redis_url(s, sec, RESULT_DB)},
        "api_secret_key": {"AIRFLOW__API__SECRET_KEY": sec.api_secret_key},
        "flower_auth": {"AIRFLOW__CELERY__FLOWER_BASIC_AUTH": f"{s.admin_user}:{sec.flower_password}"},
        # The private key's PEM, which the launcher hands over as a memfd and replaces by its /proc path.
        "jwt_signing": {"AIRFLOW__API_AUTH__JWT_PRIVATE_KEY_PATH":
                        jwt_keys.private_pem(sec.jwt_private_key) if sec.jwt_private_key else "",
                        MEMFD_VARS_ENV: "AIRFLOW__API_AUTH__JWT_PRIVATE_KEY_PATH"},
    }
    assert {k: frozenset(v) for k, v in parts.items()} == SECRET_KEYS
    return parts


def jwks_file(s: Settings) -> Path:
    """The public JWKS (world-readable, root's): where every component verifies tokens."""
    return s.run_dir / "jwks.json"


def owned_env(s: Settings, sec: Secrets, parts: frozenset[str] = frozenset()) -> dict[str, str]:
    """The options the stack depends on (never overridden): the shared part, plus the secret parts named."""
    env = shared_env(s, sec)
    for name, values in secret_env(s, sec).items():
        if name in parts:
            env.update(values)
    return env


def shared_env(s: Settings, sec: Secrets) -> dict[str, str]:
    """The options every Airflow process gets: ports, folders, auth, the public JWT key: no generated secret."""
    from airflow_resource.config import jwt_keys

    env = {
        "AIRFLOW_HOME": str(s.airflow_home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(s.dags_dir),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(s.plugins_dir),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER,
        # Tasks reach the API server here; a moved port without this fails every task.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{s.api_url}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": NO_METADATA_DB,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(s.worker_concurrency),
        "AIRFLOW__CELERY__FLOWER_HOST": "127.0.0.1",
        "AIRFLOW__CELERY__FLOWER_PORT": str(s.flower_port),
        "AIRFLOW__API__HOST": s.api_host,
        "AIRFLOW__API__PORT": str(s.api_port),
        "AIRFLOW__API__EXPOSE_CONFIG": "False",
        # Tokens are signed with the stack's Ed25519 key (jwt_keys.py) and verified against its public JWKS.
        "AIRFLOW__API_AUTH__TRUSTED_JWKS_URL": str(jwks_file(s)),
        "AIRFLOW__API_AUTH__JWT_KID": jwt_keys.kid(sec.jwt_private_key),
        "AIRFLOW__API_AUTH__JWT_ALGORITHM": jwt_keys.ALGORITHM,
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(s.scheduler_health_port),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(s.task_logs_dir),
        # Beside the task logs (Airflow's default is under AIRFLOW_HOME), so retention covers both.
        "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": str(s.dag_processor_logs_dir),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(s.log_server_port),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(s.log_server_port + 1),
        # Metrics: statsd over loopback UDP to the metrics component, which serves them on /metrics.
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(s.statsd_port),
        "AIRFLOW__METRICS__STATSD_PREFIX": STATSD_PREFIX,
        "APACHE_AIRFLOW_DATA_DIR": str(s.data_dir),
    }
    env.update(tls.airflow_env(s))  # HTTPS, Secure cookies, token and session lifetimes (config/tls.py)
    if s.base_url:
        env["AIRFLOW__API__BASE_URL"] = s.base_url
    if s.alert_webhook_url:  # the listener plugin and the deadline callback spool alerts here
        env[alerts.SPOOL_ENV] = str(s.alerts_dir)
    return env


def check_options(s: Settings, owned: dict[str, str] | None = None) -> None:
    """Refuse user Airflow options that would override what the stack depends on (the owned keys
    follow from the settings alone, so placeholder secrets serve when none are at hand)."""
    if owned is None:
        owned = owned_env(s, placeholder(), frozenset(SECRET_KEYS))
    clash = sorted(k for k in s.airflow_options if k in owned)
    if clash:
        raise CommandError(
            f"Airflow option(s) {', '.join(clash)} are set by the resource itself (ports, database, broker, "
            "secrets, folders, auth) and cannot be overridden",
            "remove them from resource.toml's [airflow] tables and the environment; ports and URLs have "
            "resource settings (`./cli.sh help`)")


def tuning(s: Settings) -> dict[str, str]:
    """The resource's performance defaults (docs/configuration.md: Tuning); unlike the options above, a user may
    override each in resource.toml's [airflow] tables or with AIRFLOW__* in the environment. The idle
    intervals come from the profile (profiles.py)."""
    profile = profiles.get(s.profile)
    return {
        # DAG files dropped into the folder should appear in seconds (Airflow's default is 300 s): the
        # folder is listed every refresh interval and a file whose mtime changed is parsed at once.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": str(profile.dag_refresh_s),
        "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": str(profile.dag_refresh_s),
        # Unchanged files are re-parsed only this often: parsing costs CPU whether or not anything changed.
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(MIN_FILE_PROCESS_INTERVAL_S),
        # The scheduler sleeps this long after a loop that found nothing to do: it bounds how soon a
        # triggered run starts and a finished task is seen (Airflow: 1 s). Each idle loop costs ~35 ms
        # of CPU (scheduler + PostgreSQL): the profile (profiles.py) chooses.
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": str(profile.scheduler_idle_sleep_s),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": str(profile.job_heartbeat_s),
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": str(profile.job_heartbeat_s),
        # A task's supervisor waits up to this long in select() once the task closed its sockets but
        # was not yet reaped, holding its Celery slot (Airflow: 5 s, i.e. up to 5 s per task); it is
        # also the heartbeat period of running tasks (one Execution API call each). 1 s against 2 s:
        # a 200-task fan-out 22.0 s against 31.4 s, 0.203 against 0.275 CPU-s per task.
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": str(profile.task_heartbeat_s),
        # Task processes' calls to the Execution API: a loaded 2-core machine answers some in more than
        # Airflow's 5 s, and a retried start of a task that did start fails the task.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": str(EXECUTION_API_TIMEOUT_S),
        # ... and while the api-server is down (a crash: supervisord restarts it in 15-60 s), they
        # retry: Airflow's 5 tries give up after ~31 s and a task that could not start or report its
        # end burns one of its retries per 31 s of outage (measured: runs failed when the api-server
        # was SIGKILLed). 20 tries 2-30 s apart wait out at least 38 s, ~4 min on average.
        "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "20",
        "AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MIN": "2",
        "AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MAX": "30",
        # A task whose worker died stops heartbeating: fail it (and so retry it) after 60 s, not
        # Airflow's 300 s; tasks of a dead scheduler are adopted after 30 s, not 300 s.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
        "AIRFLOW__API__WORKERS": str(API_WORKERS),
        # gunicorn builds the app once and forks its workers from it (uvicorn's workers each import
        # and build it again): an api-server restarted after a crash answered in 25-28 s against
        # 44-56 s (load 8), and a worker that dies is replaced by a fork in a second. A venv without
        # it (made before it was pinned, or another pinned set) keeps Airflow's uvicorn.
        "AIRFLOW__API__SERVER_TYPE": "gunicorn" if _has_gunicorn(s.venv) else "uvicorn",
        # Workers import the task runner and common operators once, before their pool forks.
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "airflow_resource.in_airflow.celery_config.CELERY_CONFIG",
        **PER_TASK_LEVERS,
    }


# Options on every task's path, each kept after an A/B run of its own (docs/benchmarks.md, "A/B runs").
PER_TASK_LEVERS = {
    # The scheduler moves at most this many task instances to queued per loop (Airflow: 16).
    "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": "64",
}


def _has_gunicorn(venv: Path) -> bool:
    return venv_contents.has_module(venv, "gunicorn")


def child_path(s: Settings) -> str:
    """Airflow finds its own child commands by name: the venv's bin must be first on PATH."""
    return os.pathsep.join([str(s.venv / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])
