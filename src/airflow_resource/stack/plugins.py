"""The resource's own files in Airflow's plugins folder (the alert listener, the disk guard, the login guard), each
present exactly while its setting wants it."""

from __future__ import annotations

from airflow_resource import safe_files
from airflow_resource.config.settings import Settings
from airflow_resource.stack import system

ALERT_PLUGIN_FILE = "resource_alerts.py"
ALERT_PLUGIN_SOURCE = """\
# Installed by the apache-airflow resource while an alert webhook is set (APACHE_AIRFLOW_ALERT_WEBHOOK_URL),
# removed when none is. Do not edit: the listener is airflow_resource/in_airflow/alert_plugin.py.
from airflow_resource.in_airflow.alert_plugin import ResourceAlertsPlugin  # noqa: F401
"""
DISK_PLUGIN_FILE = "resource_disk_guard.py"
DISK_PLUGIN_SOURCE = """\
# Installed by the apache-airflow resource while APACHE_AIRFLOW_DISK_CRITICAL_MB is above 0: the api-server
# refuses new DAG runs while the disk is nearly full. Do not edit: see airflow_resource/in_airflow/disk_plugin.py.
from airflow_resource.in_airflow.disk_plugin import ResourceDiskGuardPlugin  # noqa: F401
"""

LOGIN_PLUGIN_FILE = "resource_login_guard.py"
LOGIN_PLUGIN_SOURCE = """\
# Installed by the apache-airflow resource: the api-server limits failed logins per client (HTTP 429) and
# records them in the event log. Do not edit: see airflow_resource/in_airflow/login_guard_plugin.py.
from airflow_resource.in_airflow.login_guard_plugin import ResourceLoginGuardPlugin  # noqa: F401
"""


def install_login_plugin(s: Settings) -> None:
    """The login guard in the plugins folder, always: with login_max_failures 0 it still records failed
    logins in the event log."""
    install_plugin(s, LOGIN_PLUGIN_FILE, LOGIN_PLUGIN_SOURCE, True)


def install_alert_plugin(s: Settings, who: system.RunAs) -> None:
    """The listener plugin in the plugins folder, and the alert spool, exactly while a webhook is set."""
    if s.alert_webhook_url:
        system.make_dir(s.alerts_dir, who, 0o750)  # the service user's (home_layout's table)
    install_plugin(s, ALERT_PLUGIN_FILE, ALERT_PLUGIN_SOURCE, bool(s.alert_webhook_url))


def install_disk_plugin(s: Settings) -> None:
    """The disk guard plugin in the plugins folder exactly while a critical free-space level is set."""
    install_plugin(s, DISK_PLUGIN_FILE, DISK_PLUGIN_SOURCE, bool(s.disk_critical_mb))


def install_plugin(s: Settings, name: str, source: str, wanted: bool) -> None:
    """One of the resource's plugin files in the plugins folder exactly while it is wanted: root's, readable
    by the service group (every component imports it), written through the folder's fd."""
    path = s.plugins_dir / name
    if not wanted:
        safe_files.remove(path)
        return
    safe_files.write_file(path, source, 0o640, -1, s.plugins_dir.stat().st_gid)
