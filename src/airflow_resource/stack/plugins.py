"""The resource's own files in Airflow's plugins folder, one row each in PLUGINS: a stub that imports the
plugin class from airflow_resource.in_airflow, present exactly while its setting wants it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from airflow_resource import safe_files
from airflow_resource.config.settings import Settings
from airflow_resource.stack import system


@dataclass(frozen=True)
class Plugin:
    file: str                             # its name in <home>/plugins
    module: str                           # in airflow_resource.in_airflow
    cls: str
    while_: str                           # when it is there, said in its stub
    wanted: Callable[[Settings], bool]

    def source(self) -> str:
        return (f"# Installed by the apache-airflow resource {self.while_}. Do not edit: see\n"
                f"# airflow_resource/in_airflow/{self.module}.py.\n"
                f"from airflow_resource.in_airflow.{self.module} import {self.cls}  # noqa: F401\n")


PLUGINS = (
    # The failure listener: while an alert webhook is set (APACHE_AIRFLOW_ALERT_WEBHOOK_URL).
    Plugin("resource_alerts.py", "alert_plugin", "ResourceAlertsPlugin", "while an alert webhook is set",
           lambda s: bool(s.alert_webhook_url)),
    # The api-server refuses new DAG runs while the disk is nearly full (APACHE_AIRFLOW_DISK_CRITICAL_MB > 0).
    Plugin("resource_disk_guard.py", "disk_plugin", "ResourceDiskGuardPlugin",
           "while a critical free-space level is set", lambda s: bool(s.disk_critical_mb)),
    # Security headers on every api-server response (HSTS in it only over HTTPS).
    Plugin("resource_security_headers.py", "headers_plugin", "ResourceSecurityHeadersPlugin", "always",
           lambda s: True),
    # Failed logins limited per client (HTTP 429) and recorded in the event log; with login_max_failures 0
    # it still records them.
    Plugin("resource_login_guard.py", "login_guard_plugin", "ResourceLoginGuardPlugin", "always",
           lambda s: True),
    # Refused tokens and permissions (401/403 to a request with a credential) recorded in the event log.
    Plugin("resource_refusals.py", "refusal_plugin", "ResourceRefusalsPlugin", "always", lambda s: True),
)
BY_MODULE = {p.module: p for p in PLUGINS}


def install_plugin(s: Settings, plugin: Plugin) -> None:
    """One plugin stub in the plugins folder exactly while it is wanted: root's, readable by the service
    group (every component imports it), written through the folder's fd."""
    path = s.plugins_dir / plugin.file
    if not plugin.wanted(s):
        safe_files.remove(path)
        return
    safe_files.write_file(path, plugin.source(), 0o640, -1, s.plugins_dir.stat().st_gid)


def install_all(s: Settings, who: system.RunAs) -> None:
    if s.alert_webhook_url:
        system.make_dir(s.alerts_dir, who, 0o750)  # the listener's spool: the service user's (home_layout's table)
    for plugin in PLUGINS:
        install_plugin(s, plugin)
