"""One resolver for every setting: defaults < config file < APACHE_AIRFLOW_* env < flags.

The table it resolves is settings_table.SETTINGS; its names are importable from here too, so
callers need one module.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from airflow_resource.config import profiles
from airflow_resource.errors import CommandError
from airflow_resource.config.settings_table import (  # noqa: F401  (re-exported for callers)
    AIRFLOW_TABLE, BY_NAME, ENV_PREFIX, PORT_SETTINGS, SETTINGS, UNSAFE_PATH_CHARS, WILDCARD_HOSTS, Setting, coerce,
)
from airflow_resource.config.effective_file import EFFECTIVE_FILE, load as load_effective  # noqa: F401

CONFIG_FILE_NAME = "resource.toml"
# The running stack's settings for a daemon that needs them (the backup schedule): through its env file,
# since the effective file is root's.
SETTINGS_ENV = ENV_PREFIX + "RUNNING_SETTINGS"
TLS_ON, TLS_OFF = ("on", "true", "yes", "1"), ("off", "false", "no", "0", "")
INSECURE_ACK = "acknowledged"  # api_insecure: the one value that lets a non-loopback api_host go without TLS


@dataclass(frozen=True)
class Settings:
    home: Path
    venv: Path
    pinned_set: str
    dags_dir: Path
    api_host: str
    api_port: int
    postgres_port: int
    redis_port: int
    flower_port: int
    scheduler_health_port: int
    metrics_port: int
    statsd_port: int
    log_server_port: int
    workers: int
    worker_concurrency: int
    worker_memory_limit_mb: int
    disk_warn_percent: int
    disk_critical_mb: int
    postgres_url: str
    redis_url: str
    service_user: str
    data_user: str
    admin_user: str
    base_url: str
    backup_interval_minutes: int
    backup_keep: int
    backup_passphrase_file: str
    log_retention_days: int
    stop_grace_seconds: int
    login_max_failures: int
    login_window_seconds: int
    alert_webhook_url: str
    # Added with TLS (docs/tls.md): defaults, so an effective file written before them still loads.
    tls: str = "off"
    tls_cert_file: str = ""
    tls_key_file: str = ""
    api_insecure: str = ""
    api_token_minutes: int = 60
    ui_session_minutes: int = 720
    profile: str = "balanced"  # config/profiles.py
    # Airflow options the user sets (AIRFLOW__SECTION__KEY -> value), from resource.toml's [airflow]
    # tables and AIRFLOW__* in the environment; airflow_config checks them against what the stack owns.
    airflow_options: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    # The venv the settings name (APACHE_AIRFLOW_VENV, <home>/venv) when the home's install record points
    # `venv` at another one (a home on a pinned set other than the default): where the default set goes.
    configured_venv: Path | None = field(default=None, compare=False)

    # Derived paths: one place, so the layout in DESIGN.md is written down once.
    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def plugins_dir(self) -> Path:
        return self.home / "plugins"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def component_logs_dir(self) -> Path:
        return self.logs_dir / "components"

    @property
    def task_logs_dir(self) -> Path:
        return self.logs_dir / "tasks"

    @property
    def dag_processor_logs_dir(self) -> Path:
        """[logging] dag_processor_child_process_log_directory: the DAG processor's per-file parse logs."""
        return self.logs_dir / "dag_processor"

    @property
    def alerts_dir(self) -> Path:
        """Spool of failure alerts: outbox/ (written by Airflow's processes), sent/, failed/."""
        return self.home / "alerts"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def postgres_dir(self) -> Path:
        return self.home / "postgres"

    @property
    def redis_dir(self) -> Path:
        return self.home / "redis"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def state_dir(self) -> Path:
        """What the components write as the service user (heartbeats, the backup schedule's status, their
        HOME); root only reads there. run/ is root's: nothing in it is the service user's to change."""
        return self.home / "state"

    @property
    def backups_dir(self) -> Path:
        return self.home / "backups"

    @property
    def backup_status_file(self) -> Path:
        return self.run_dir / "backup-schedule.json"  # written by the schedule, which runs as root

    @property
    def secrets_file(self) -> Path:
        return self.home / "secrets.env"

    @property
    def supervisord_conf(self) -> Path:
        return self.home / "supervisord.conf"

    @property
    def supervisord_socket(self) -> Path:
        return self.run_dir / "supervisord.sock"

    @property
    def config_file(self) -> Path:
        return Path(os.environ.get(ENV_PREFIX + "CONFIG") or self.home / CONFIG_FILE_NAME)

    @property
    def embedded_postgres(self) -> bool:
        return not self.postgres_url

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    @property
    def api_local_host(self) -> str:
        """Where a client on this machine reaches the api-server: loopback when it listens on every address."""
        return "127.0.0.1" if self.api_host in WILDCARD_HOSTS else self.api_host

    @property
    def api_url(self) -> str:
        host = self.api_local_host
        if ":" in host:
            host = f"[{host}]"  # IPv6 literal
        return f"{'https' if self.tls_on else 'http'}://{host}:{self.api_port}"

    @property
    def tls_on(self) -> bool:
        return self.tls.strip().lower() in TLS_ON

    @property
    def api_base(self) -> str:
        """The api-server as this machine reaches it, with the sub-path of base_url (/auth answers only there)."""
        from urllib.parse import urlsplit

        return self.api_url + urlsplit(self.base_url).path.rstrip("/") if self.base_url else self.api_url

    def to_json(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if f.name not in ("sources", "configured_venv")}
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


def read_config_file(path: Path) -> dict[str, Any]:
    """Settings from the TOML config file; a broken file is an error, not a silent default."""
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CommandError(f"config file {path} is not valid TOML: {exc}", f"fix or remove {path}") from None
    unknown = sorted(set(data) - set(BY_NAME) - {AIRFLOW_TABLE})
    if unknown:
        raise CommandError(
            f"config file {where(path, unknown[0])} has unknown setting(s): {', '.join(unknown)}",
            f"known settings: {', '.join(BY_NAME)}",
        )
    return data


def where(path: Path, key: str) -> str:
    """`path:line` of the first top-level `key = ...` in a TOML file (just `path` when not found), so
    an error names the line to fix. Read only on the error path."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return str(path)
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("["):
            break  # past the top-level keys: tables follow
        if pattern.match(line):
            return f"{path}:{number}"
    return str(path)


AIRFLOW_ENV_PREFIX = "AIRFLOW__"


def _airflow_options(file_data: Mapping[str, Any], environ: Mapping[str, str], origin: str) -> dict[str, str]:
    """Airflow options as AIRFLOW__SECTION__KEY: resource.toml's [airflow.<section>] tables, then
    AIRFLOW__* variables of the environment (which win, as they do for Airflow itself)."""
    options: dict[str, str] = {}
    table = file_data.get(AIRFLOW_TABLE, {})
    hint = f"write Airflow options as [airflow.<section>] tables in {origin}, e.g. [airflow.scheduler] " \
           "scheduler_idle_sleep_time = 0.5"
    if not isinstance(table, dict):
        raise CommandError(f"{AIRFLOW_TABLE} in {origin} must be a table of sections", hint)
    for section, keys in table.items():
        if not isinstance(keys, dict):
            raise CommandError(f"[{AIRFLOW_TABLE}] {section} in {origin} must be a table of options", hint)
        for key, value in keys.items():
            if isinstance(value, (dict, list)):
                raise CommandError(f"[{AIRFLOW_TABLE}.{section}] {key} in {origin} must be a string, number or "
                                   "boolean", hint)
            text = str(value).lower() if isinstance(value, bool) else str(value)
            options[f"{AIRFLOW_ENV_PREFIX}{section.upper()}__{key.upper()}"] = text
    for name, value in environ.items():
        if name.startswith(AIRFLOW_ENV_PREFIX) and name.count("__") >= 2:
            options[name] = value
    return options


def resolve(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    read_file: Callable[[Path], dict[str, Any]] = read_config_file,
) -> Settings:
    """Resolve every setting in precedence order; home first, since the config file lives there."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def layer_value(s: Setting, file_data: Mapping[str, Any]) -> tuple[Any, str] | None:
        if s.name in flags:
            return flags[s.name], "flag"
        if environ.get(s.env):  # set but empty counts as unset, as in the shell's ${VAR:-default}
            return environ[s.env], f"environment {s.env}"
        if s.name in file_data:
            return file_data[s.name], "config file"
        return None

    home_setting = BY_NAME["home"]
    found = layer_value(home_setting, {})
    values["home"] = coerce(home_setting, found[0], found[1]) if found else home_setting.default(values)
    sources["home"] = found[1] if found else "default"
    config_path = Path(environ.get(ENV_PREFIX + "CONFIG") or Path(values["home"]).expanduser() / CONFIG_FILE_NAME)
    file_data = read_file(config_path)
    if "home" in file_data:
        raise CommandError(
            f"config file {config_path} sets home, but the config file lives in the home",
            f"set {home_setting.env} or --home instead",
        )
    for s in SETTINGS[1:]:
        found = layer_value(s, file_data)
        if found:
            origin = found[1] if found[1] != "config file" else f"config file {where(config_path, s.name)}"
            values[s.name] = coerce(s, found[0], origin)
            sources[s.name] = found[1]
        else:
            values[s.name] = s.default(values) if callable(s.default) else s.default
            sources[s.name] = "default"
    for name in ("home", "venv", "dags_dir"):
        values[name] = Path(values[name]).expanduser().absolute()
        bad = sorted({ch for ch in str(values[name]) if ch in UNSAFE_PATH_CHARS or not ch.isprintable()})
        if bad:
            raise CommandError(
                f"{name} {str(values[name])!r} contains {' '.join(repr(c) for c in bad)}, which supervisord's "
                "config cannot carry", f"choose a path without them ({BY_NAME[name].env})")
    _check_choice("tls", values["tls"].strip().lower(), TLS_ON + TLS_OFF, sources)
    _check_choice("api_insecure", values["api_insecure"].strip().lower(), ("", INSECURE_ACK), sources)
    values["profile"] = values["profile"].strip().lower()
    _check_choice("profile", values["profile"], profiles.NAMES, sources)
    last_log_port = values["log_server_port"] + values["workers"]
    if last_log_port > 65535:
        raise CommandError(
            f"log_server_port {values['log_server_port']} + {values['workers']} worker(s) needs ports up to {last_log_port}",
            f"lower {BY_NAME['log_server_port'].env} or {BY_NAME['workers'].env}",
        )
    values["airflow_options"] = _airflow_options(file_data, environ, str(config_path))
    configured_venv = values["venv"]
    recorded = _recorded_venv(values["home"])
    if recorded is not None:
        values["venv"], sources["venv"] = recorded, "home install record"
    return Settings(**values, sources=sources, configured_venv=configured_venv)


def _check_choice(name: str, value: str, allowed: tuple[str, ...], sources: Mapping[str, str]) -> None:
    if value not in allowed:
        raise CommandError(f"{name} from {sources.get(name, 'default')} is {value!r}, not one of "
                           f"{', '.join(repr(a) for a in allowed if a)}", f"fix {BY_NAME[name].env}")


def _recorded_venv(home: Path) -> Path | None:
    from airflow_resource.config import pinned_sets

    return pinned_sets.recorded_venv(home)


def from_json(data: Mapping[str, Any]) -> Settings:
    """Settings as Settings.to_json() wrote them."""
    values = {f.name: data[f.name] for f in dataclasses.fields(Settings)
              if f.name in data and f.name not in ("sources", "configured_venv")}
    for name in ("home", "venv", "dags_dir"):
        values[name] = Path(values[name])
    values["airflow_options"] = dict(values.get("airflow_options") or {})
    return Settings(**values, sources={k: "running stack" for k in values})


def for_running_stack(flags: Mapping[str, Any] | None = None, damaged_ok: bool = False) -> Settings:
    """Resolved settings, overridden by what the running stack was started with. damaged_ok (stop,
    uninstall): a damaged effective file falls back to today's settings, since stopping needs no ports."""
    current = resolve(flags)
    try:
        effective = load_effective(current.home)
    except CommandError:
        if not damaged_ok:
            raise
        effective = None
    if not effective:
        return current
    merged = {k: effective.get(k, v) for k, v in current.to_json().items()}
    merged["airflow_options"] = dict(merged.get("airflow_options") or {})
    for name in ("home", "venv", "dags_dir"):
        merged[name] = Path(merged[name])
    return Settings(**merged, sources={k: "running stack" for k in merged}, configured_venv=current.configured_venv)

