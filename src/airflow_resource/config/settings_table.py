"""The table of settings: each one's name, type, default, bounds and description, and the check of
a single value against its entry.

SETTINGS is the single source for the resolver (settings.py), `config/schema.json` and
`config/defaults.sh` (generated.py) and the "Default configuration" part of `./cli.sh help`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from airflow_resource.errors import CommandError

ENV_PREFIX = "APACHE_AIRFLOW_"
AIRFLOW_TABLE = "airflow"  # resource.toml's [airflow.<section>] tables: Airflow options, not settings


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any  # a value, or a callable of the partly-resolved values
    description: str
    minimum: int | None = None
    maximum: int | None = None
    secret: bool = False  # may hold a credential: never taken from a command line

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def _default_home(_: Mapping[str, Any]) -> str:
    if os.geteuid() == 0:
        return "/var/lib/apache-airflow"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "apache-airflow")


def _default_concurrency(_: Mapping[str, Any]) -> int:
    # Slots, not CPU, capped trivial tasks at 8 slots on 2 cores (a finished task holds its slot up to the
    # task heartbeat interval): 12 ran a 200-task fan-out in 26.2 s against 31.4 s. Far more only queues
    # work inside the worker and overloads the machine (measured: 32 failed on 2 cores).
    return max(6, 6 * (os.cpu_count() or 1))


def _default_pinned_set() -> str:
    from airflow_resource.config import pinned_sets

    return pinned_sets.default_set().name


def _default_worker_memory(_: Mapping[str, Any]) -> int:
    # Half the machine per worker: a runaway task cannot take the memory PostgreSQL, Redis and the
    # scheduler need, while ordinary tasks are never near it.
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0
    return max(256, total // 2 // 2**20)



PORT = dict(minimum=1, maximum=65535)
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # bind addresses that mean every address
# supervisord's ini reads '%' as interpolation and ';'/'#' as comments; quotes break its env parser.
UNSAFE_PATH_CHARS = set("%;#'\"\\")

SETTINGS: tuple[Setting, ...] = (
    Setting("home", str, _default_home, "Resource home: venv, Airflow home, data, logs, secrets."),
    Setting("venv", str, lambda v: str(Path(v["home"]) / "venv"), "Python venv with Airflow and this package "
            "(the default pinned set's; a home on another set runs from the venv its install record names)."),
    Setting("pinned_set", str, lambda v: _default_pinned_set(), "Pinned set (Airflow release) a new home is "
            "installed on; an installed home keeps its own until `./cli.sh manage upgrade` / `./cli.sh manage rollback`."),
    Setting("dags_dir", str, lambda v: str(Path(v["home"]) / "dags"), "Folder of DAG files the stack parses."),
    Setting("api_host", str, "127.0.0.1", "Bind address of the api-server (UI and REST API); 0.0.0.0 to serve the network."),
    Setting("api_port", int, 48080, "Port of the api-server (UI, REST API, Execution API).", **PORT),
    Setting("postgres_port", int, 45432, "Port of the embedded PostgreSQL.", **PORT),
    Setting("redis_port", int, 46379, "Port of the embedded Redis.", **PORT),
    Setting("flower_port", int, 45555, "Port of Flower (Celery monitoring, basic auth).", **PORT),
    Setting("scheduler_health_port", int, 48974, "Port of the scheduler's health server.", **PORT),
    Setting("metrics_port", int, 49102, "Port of the Prometheus /metrics endpoint.", **PORT),
    Setting("statsd_port", int, 49125, "UDP port where the metrics exporter reads Airflow's statsd.", **PORT),
    Setting("log_server_port", int, 48793, "First port of the task log servers (triggerer, then one per worker).", **PORT),
    Setting("workers", int, 1, "Number of Celery worker processes on this machine.", minimum=0, maximum=64),
    Setting("worker_concurrency", int, _default_concurrency, "Task slots per Celery worker.", minimum=1, maximum=256),
    Setting("worker_memory_limit_mb", int, _default_worker_memory, "Memory limit of each Celery worker with its "
            "tasks, in MB (0: none): a task that allocates past it is killed and fails like any task; the worker "
            "keeps running. Default: half the machine's memory.", minimum=0, maximum=2**30),
    Setting("disk_warn_percent", int, 10, "status reports the stack degraded when a file system of the home has "
            "less than this percentage free (0: never).", minimum=0, maximum=99),
    Setting("disk_critical_mb", int, 512, "Below this many MB free on a file system of the home, new DAG runs are "
            "refused and no new task starts until space is freed (0: never).", minimum=0, maximum=2**30),
    Setting("postgres_url", str, "", "URL of a PostgreSQL that already runs (then no embedded PostgreSQL)."),
    Setting("redis_url", str, "", "URL of a Redis that already runs (then no embedded Redis)."),
    Setting("service_user", str, "airflow", "Unprivileged user the components run as when the CLI runs as root."),
    Setting("data_user", str, "airflow-data", "Unprivileged user PostgreSQL and Redis run as when the CLI runs as "
            "root (their data is out of the service user's reach, so out of every task's)."),
    Setting("admin_user", str, "admin", "User name of the generated UI/REST admin."),
    Setting("base_url", str, "", "Public base URL of the UI when behind a proxy (e.g. http://host/airflow)."),
    Setting("backup_interval_minutes", int, 0, "Minutes between scheduled backups into <home>/backups (0: no schedule).",
            minimum=0, maximum=525600),
    Setting("backup_keep", int, 7, "Scheduled backups kept; older scheduled ones are deleted (manual ones never).",
            minimum=1, maximum=10000),
    Setting("backup_passphrase_file", str, "", "File with the passphrase that encrypts the secrets in scheduled "
            "backups (read by the root CLI at start; keep it root's, 0600); empty: scheduled backups leave the secrets out."),
    Setting("log_retention_days", int, 30, "Days task logs and DAG-processor logs are kept (0: forever); "
            "the housekeeper removes older ones hourly.", minimum=0, maximum=36500),
    Setting("stop_grace_seconds", int, 30, "Seconds a stopping worker gives its running tasks to finish; tasks "
            "still running then are killed and queued again for a new try at the next start.",
            minimum=0, maximum=86400),
    Setting("login_max_failures", int, 5, "Failed logins a client (IP address) may make to the API's /auth/token, "
            "the UI's login form and Flower within login_window_seconds; then it gets HTTP 429 (0: no limit).",
            minimum=0, maximum=10000),
    Setting("login_window_seconds", int, 300, "Seconds, from a client's first failed login, its failures are "
            "counted; past login_max_failures it is refused until they pass.", minimum=1, maximum=86400),
    Setting("alert_webhook_url", str, "", "URL a JSON alert is POSTed to when a task or DAG run fails or a "
            "DAG run misses its deadline (empty: no alerts). Environment or config file only.", secret=True),
    Setting("tls", str, "off", "on: the api-server (UI, REST API, Execution API) serves HTTPS only, with "
            "tls_cert_file/tls_key_file or a CA and certificate generated into <home>/tls (docs/tls.md)."),
    Setting("tls_cert_file", str, "", "PEM certificate of the api-server (then its chain up to the CA clients "
            "trust) when tls is on; empty: a generated one."),
    Setting("tls_key_file", str, "", "PEM private key of tls_cert_file (read by the root CLI at start; keep it "
            "root's, 0600)."),
    Setting("api_insecure", str, "", "`acknowledged`: serve a non-loopback api_host without TLS anyway (passwords "
            "and tokens cross the network in clear; status keeps warning)."),
    Setting("api_token_minutes", int, 60, "Lifetime of REST API tokens from /auth/token and of the UI's API "
            "token (the UI renews it while its session lives).", minimum=1, maximum=43200),
    Setting("ui_session_minutes", int, 720, "UI sessions end after this many minutes without activity.",
            minimum=5, maximum=525600),
    Setting("profile", str, "balanced", "latency, balanced or quiet: how often idle loops wake, trading how "
            "soon a run starts against idle CPU (docs/configuration.md, Profiles)."),
)
BY_NAME = {s.name: s for s in SETTINGS}
# Every TCP/UDP port the stack listens on has one of these (log_server_port: the first of a block).
PORT_SETTINGS = tuple(s for s in SETTINGS if s.name.endswith("_port"))


def coerce(setting: Setting, raw: Any, origin: str) -> Any:
    try:
        if setting.type is int:
            if isinstance(raw, (bool, float)):
                raise ValueError
            value = int(raw)
        else:
            value = str(raw)
    except (TypeError, ValueError):
        raise CommandError(
            f"{setting.name} from {origin} must be {setting.type.__name__}, got {raw!r}",
            f"fix {origin}; `./cli.sh help` lists every setting",
        ) from None
    if setting.minimum is not None and value < setting.minimum or setting.maximum is not None and value > setting.maximum:
        raise CommandError(
            f"{setting.name} from {origin} is {value}, outside {setting.minimum}..{setting.maximum}",
            f"fix {origin}",
        )
    return value
