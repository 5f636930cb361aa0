"""The one component table: supervisord config, start order, status and health derive from it."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_resource.config import airflow_config
from airflow_resource.config import tls
from airflow_resource.in_airflow import alerts
from airflow_resource.stack import datastores
from airflow_resource.in_airflow import diskspace
from airflow_resource.in_airflow import login_limit
from airflow_resource.stack import disk
from airflow_resource.daemons import metrics
from airflow_resource.stack.probes import Probe
from airflow_resource.config.secrets import Secrets
from airflow_resource.config.settings import SETTINGS_ENV, Settings

# Start groups: each waits for the one before to be ready. Stop runs in reverse.
DATA, API, CORE, EDGE = 10, 20, 30, 40
# ... except that the core group (scheduler, dag-processor, triggerer, workers) needs only PostgreSQL and
# Redis, not the api-server: `manage start` launches both at once and waits for each (startup.py).
START_TOGETHER = frozenset({API, CORE})
SERVER_STOP_TIMEOUT_S = 20

# Who holds which secret (docs/architecture.md, "Secrets by component"), after Airflow's security model:
# the metadata DSN and the Fernet key on the control plane only (api-server, scheduler, dag-processor,
# triggerer); the JWT private key on the issuers (the scheduler signs task tokens, the api-server REST
# and refreshed task tokens); the API secret key (FAB's session cookies, log-server tokens) on the
# api-server; the broker on what queues and runs tasks. Workers, which run DAG code, get the broker only.
API_SECRETS = frozenset({"metadata_db", "fernet", "api_secret_key", "jwt_signing"})
SCHEDULER_SECRETS = frozenset({"metadata_db", "fernet", "broker", "jwt_signing"})
PARSER_SECRETS = frozenset({"metadata_db", "fernet"})  # dag-processor, triggerer
WORKER_SECRETS = frozenset({"broker"})
# No task log server: Airflow binds it to every address (utils/serve_logs/core.py: host ""), and with every
# worker on this machine the api-server reads the task and trigger logs from the shared logs folder
# (docs/tls.md, "Log servers"). Their ports stay reserved for workers on other hosts.
SKIP_SERVE_LOGS = ("--skip-serve-logs",)
# Celery workers neither synchronise with each other at start (mingle: ~1 s, for revoked-task lists
# Airflow does not use) nor subscribe to each other's events (gossip: every task event of every other
# worker, once Flower turns events on). Flower and the ping probe use their own channels.
WORKER_SOLO = ("--without-mingle", "--without-gossip")
FLOWER_SECRETS = frozenset({"broker", "flower_auth"})


@dataclass(frozen=True)
class Component:
    name: str
    argv: tuple[str, ...]
    probe: Probe
    priority: int
    port: int | None = None
    port_setting: str | None = None  # the setting that moves `port` (named in "port in use" errors)
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: str = "TERM"
    stop_timeout: int = SERVER_STOP_TIMEOUT_S
    airflow: bool = True  # gets the shared Airflow environment
    # Whom the launcher drops to under root: "service", "data" (PostgreSQL, Redis), or "root" (no drop: the
    # backup schedule, whose archives hold the metadata database and must be out of tasks' reach).
    run_as: str = "service"
    # The secret parts of the Airflow environment it gets (airflow_config.SECRET_KEYS): only what it needs.
    secrets: frozenset[str] = frozenset()

    @property
    def group(self) -> str:
        return {DATA: "data", API: "api", CORE: "core", EDGE: "edge"}[self.priority]


LOGIN_LIMIT_DB = 2  # Redis database of the login counters (0 and 1: Celery's queue and results)
FLOWER_CONF = Path(login_limit.__file__).with_name("flower_conf.py")
WORKER_PREFIX = "worker-"
HOUSEKEEPER_USER = "resource-housekeeper"  # FAB user of the pool hold (role HOUSEKEEPER_ROLE)
HOUSEKEEPER_ROLE = "ResourceHousekeeper"


def worker_hostname(index: int) -> str:
    return f"{WORKER_PREFIX}{index}@{socket.gethostname()}"


def build(s: Settings, sec: Secrets, pg_bindir: str = "", redis_server: str = "") -> list[Component]:
    """Every component of the stack, in start order."""
    airflow = str(s.venv / "bin" / "airflow")
    comps: list[Component] = []

    def at(setting: str, offset: int = 0) -> dict[str, Any]:
        """A component's port and the setting it comes from."""
        return {"port": getattr(s, setting) + offset, "port_setting": setting}

    if s.embedded_postgres:
        comps.append(Component(
            "postgres", (f"{pg_bindir}/postgres", "-D", str(s.postgres_dir)),
            # Superuser login: ready before the airflow role exists (first start creates it).
            Probe("postgres", datastores.superuser_dsn(s, sec)),
            DATA, **at("postgres_port"), stop_signal="INT", airflow=False, run_as="data",  # INT = fast shutdown
        ))
    if s.embedded_redis:
        comps.append(Component(
            "redis", (redis_server or "redis-server", str(s.redis_dir / "redis.conf")),
            Probe("redis", airflow_config.redis_url(s, sec)), DATA, **at("redis_port"), airflow=False, run_as="data",
        ))
    # Prometheus exporter of Airflow's statsd: up with the data stores, so no early metric is lost.
    comps.append(Component(
        "metrics",
        (str(s.venv / "bin" / "python"), "-m", "airflow_resource.daemons.metrics",
         "--statsd.listen-udp", f"127.0.0.1:{s.statsd_port}",
         "--web.listen-address", f"127.0.0.1:{s.metrics_port}",
         "--statsd.mapping-config", str(metrics.MAPPING_FILE)),
        Probe("http", f"http://127.0.0.1:{s.metrics_port}/metrics"), DATA, **at("metrics_port"), airflow=False,
        env={metrics.BROKER_ENV: airflow_config.redis_url(s, sec)},
    ))
    comps += [
        # The disk guard's middleware (disk_plugin.py) reads where to look and its threshold here.
        Component("api-server", (airflow, "api-server"), Probe("api"), API, **at("api_port"),
                  env={**disk_env(s), **login_env(s), login_limit.REDIS_URL_ENV: login_redis_url(s, sec)},
                  secrets=API_SECRETS),
        Component("scheduler", (airflow, "scheduler"),
                  Probe("http", f"http://127.0.0.1:{s.scheduler_health_port}/health"), CORE, **at("scheduler_health_port"),
                  secrets=SCHEDULER_SECRETS),
        Component("dag-processor", (airflow, "dag-processor"), Probe("health_key", "dag_processor"), CORE,
                  secrets=PARSER_SECRETS),
        Component("triggerer", (airflow, "triggerer", *SKIP_SERVE_LOGS), Probe("health_key", "triggerer"), CORE, **at("log_server_port"),
                  secrets=PARSER_SECRETS),
    ]
    for i in range(1, s.workers + 1):
        log_port = at("log_server_port", i)
        comps.append(Component(
            f"{WORKER_PREFIX}{i}",
            (airflow, "celery", "worker", "--celery-hostname", worker_hostname(i), *SKIP_SERVE_LOGS, *WORKER_SOLO),
            Probe("celery", worker_hostname(i)), CORE, **log_port,
            env={"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_port["port"])},
            stop_timeout=s.stop_grace_seconds,  # Celery's warm shutdown lets running tasks finish
            secrets=WORKER_SECRETS,
        ))
    if s.backup_interval_minutes:
        # Scheduled backups (backup_schedule.py): it archives the whole secrets.env, so it gets every secret,
        # and runs as root like `backup create`: its archives (the metadata database) stay root's.
        comps.append(Component(
            "backup", (str(s.venv / "bin" / "python"), "-m", "airflow_resource.daemons.backup_schedule", "--home", str(s.home)),
            Probe("backup_schedule", str(s.backup_status_file)), EDGE, airflow=False, run_as="root",
            env={**sec.as_env(), SETTINGS_ENV: json.dumps(s.to_json()),  # the effective file is root's
                 **backup_passphrase_env(s)},
        ))
    comps.append(Component(
        # Its configuration file (Python, run by Flower at start) puts the login limit in front of its basic auth.
        "flower", (airflow, "celery", "flower", "--flower-conf", str(FLOWER_CONF)),
        Probe("http", f"http://127.0.0.1:{s.flower_port}/healthcheck", sec.flower_password, s.admin_user),
        EDGE, **at("flower_port"), secrets=FLOWER_SECRETS,
        env={**login_env(s), login_limit.REDIS_URL_ENV: login_redis_url(s, sec)},  # its login events' queue
    ))
    # Alert delivery, log retention and the disk-full hold of the pools (housekeeper.py). The webhook URL
    # may hold a token and the housekeeper's password is one: env file only. Its FAB user may edit pools
    # and variables, nothing else (standalone/admin_user.py).
    env = {**disk_env(s), Secrets.env_name("housekeeper_password"): sec.housekeeper_password}
    if s.alert_webhook_url:
        env[alerts.WEBHOOK_ENV] = s.alert_webhook_url
    if s.tls_on:  # its REST client verifies the api-server with the stack's CA
        env[tls.API_CA_ENV] = str(tls.ca_file(s))
    comps.append(Component(
        "housekeeper",
        (str(s.venv / "bin" / "python"), "-m", "airflow_resource.daemons.housekeeper",
         "--alerts-dir", str(s.alerts_dir), "--task-logs", str(s.task_logs_dir),
         "--dag-processor-logs", str(s.dag_processor_logs_dir), "--retention-days", str(s.log_retention_days),
         "--ui-url", s.base_url or s.api_url, "--heartbeat", str(housekeeper_heartbeat(s)),
         "--api-url", s.api_base, "--api-user", HOUSEKEEPER_USER),
        Probe("heartbeat_file", str(housekeeper_heartbeat(s))), EDGE, airflow=False, env=env,
    ))
    return comps


BACKUP_PASSPHRASE_ENV = "APACHE_AIRFLOW_BACKUP_PASSPHRASE"  # backup/archive.py PASSPHRASE_ENV


def backup_passphrase_env(s: Settings) -> dict[str, str]:
    """The scheduled backups' passphrase, read here by the root CLI into the backup component's root-only env
    file: the daemon runs as the service user, and a file that user can read, a task can read too. An
    unreadable file is left to the daemon, which reports it in its status."""
    if not s.backup_passphrase_file:
        return {}
    try:
        first = Path(s.backup_passphrase_file).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    return {BACKUP_PASSPHRASE_ENV: first[0]} if first and first[0] else {}


def login_env(s: Settings) -> dict[str, str]:
    """The login limit of the api-server's and Flower's guards (login_limit.py)."""
    return {login_limit.MAX_FAILURES_ENV: str(s.login_max_failures), login_limit.WINDOW_ENV: str(s.login_window_seconds)}


def login_redis_url(s: Settings, sec: Secrets) -> str:
    """Where the api-server's workers share the login counters: a Redis database of its own (the embedded
    Redis; an external one is used as given, the keys have their own prefix)."""
    return airflow_config.redis_url(s, sec, LOGIN_LIMIT_DB)


def disk_env(s: Settings) -> dict[str, str]:
    """Where the disk guard looks and below how many MB free it holds new work (diskspace.py)."""
    return {diskspace.PATHS_ENV: os.pathsep.join(str(p) for p in disk.watched_paths(s)),
            diskspace.CRITICAL_ENV: str(s.disk_critical_mb)}


def housekeeper_heartbeat(s: Settings) -> Path:
    return s.state_dir / "housekeeper.heartbeat"


def by_name(comps: list[Component]) -> dict[str, Component]:
    return {c.name: c for c in comps}


def groups(comps: list[Component]) -> list[list[Component]]:
    """Components grouped by start priority, in start order."""
    out: dict[int, list[Component]] = {}
    for c in comps:
        out.setdefault(c.priority, []).append(c)
    return [out[k] for k in sorted(out)]
