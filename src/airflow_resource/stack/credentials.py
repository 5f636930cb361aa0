"""`./cli.sh credentials`: the resource ecosystem's connection JSON; secrets masked unless asked."""

from __future__ import annotations

from typing import Any

from airflow_resource import RESOURCE_NAME, printer
from airflow_resource.config import airflow_config
from airflow_resource.config import tls
from airflow_resource.stack import handle
from airflow_resource.config import secrets as secrets_mod
from airflow_resource.errors import AlreadySo, CommandError
from airflow_resource.config.settings import Settings


def connections(s: Settings, sec: secrets_mod.Secrets, show: bool) -> list[dict[str, Any]]:
    def pw(value: str) -> str:
        return value if show else secrets_mod.mask(value)

    api_host = s.api_local_host
    conns = [
        {"id": "api", "name": "Airflow UI and REST API (admin)",
         "connection": {"host": api_host, "port": s.api_port, "protocol": "https" if s.tls_on else "http",
                        "url": s.base_url or s.api_url, "token_url": f"{s.api_base}/auth/token",
                        "api_base": f"{s.api_base}/api/v2", **_ca(s)},
         "auth": {"username": s.admin_user, "password": pw(sec.admin_password)},
         "metadata": {"auth_manager": "FAB", "role": "Admin"}},
    ]
    if s.embedded_postgres:
        conns.append({"id": "postgres", "name": "PostgreSQL (Airflow metadata)",
                      "connection": {"host": "127.0.0.1", "port": s.postgres_port, "database": airflow_config.AIRFLOW_DB,
                                     "sslmode": "disable"},
                      "auth": {"username": airflow_config.AIRFLOW_DB_USER, "password": pw(sec.postgres_password)},
                      "metadata": {"embedded": True}})
        conns.append({"id": "resource-data", "name": "PostgreSQL (pipelines' database resource_data)",
                      "connection": {"host": "127.0.0.1", "port": s.postgres_port, "database": airflow_config.DATA_DB,
                                     "sslmode": "disable"},
                      "auth": {"username": airflow_config.DATA_DB_USER, "password": pw(sec.data_db_password)},
                      "metadata": {"airflow_connection_id": airflow_config.DATA_CONN_ID, "embedded": True}})
    else:
        conns.append({"id": "postgres", "name": "PostgreSQL (external)",
                      "connection": {"url": _mask_url(s.postgres_url, show)}, "auth": {},
                      "metadata": {"embedded": False}})
    if s.embedded_redis:
        conns.append({"id": "redis", "name": "Redis (Celery broker)",
                      "connection": {"host": "127.0.0.1", "port": s.redis_port, "database": 0},
                      "auth": {"username": "default", "password": pw(sec.redis_password)},
                      "metadata": {"embedded": True}})
    else:
        conns.append({"id": "redis", "name": "Redis (external)", "connection": {"url": _mask_url(s.redis_url, show)},
                      "auth": {}, "metadata": {"embedded": False}})
    conns.append({"id": "flower", "name": "Flower (Celery monitoring)",
                  "connection": {"host": "127.0.0.1", "port": s.flower_port, "protocol": "http",
                                 "url": f"http://127.0.0.1:{s.flower_port}"},
                  "auth": {"username": s.admin_user, "password": pw(sec.flower_password)}, "metadata": {}})
    return conns


def _ca(s: Settings) -> dict[str, str]:
    """With TLS: the CA file a client verifies the api-server with."""
    ca = tls.ca_file(s)
    return {"ca_file": str(ca)} if ca else {}


def _mask_url(url: str, show: bool) -> str:
    if show:
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":********@")
        return urlunsplit((parts.scheme, netloc, *parts[2:]))
    return url


def show(s: Settings, fmt: str, show_secrets: bool) -> int:
    try:
        sec = secrets_mod.require_installed(s)
    except CommandError as exc:  # the contract: exit 2 when no credentials are configured
        raise AlreadySo(f"no credentials: {exc.message}", exc.hint) from None
    state = "running" if handle.is_running(s) else "stopped"
    data = {"resource": RESOURCE_NAME, "status": state, "connections": connections(s, sec, show_secrets)}
    if fmt == "json":
        printer.emit_json(data)
    elif fmt == "env":
        for c in data["connections"]:
            prefix = "APACHE_AIRFLOW_" + c["id"].upper().replace("-", "_")
            for k, v in {**c["connection"], **c["auth"]}.items():
                if isinstance(v, (str, int)):
                    print(f"{prefix}_{k.upper()}={v}")
    else:
        rows = [[c["id"], c["connection"].get("url") or f"{c['connection'].get('host')}:{c['connection'].get('port')}",
                 c["auth"].get("username", ""), c["auth"].get("password", "")] for c in data["connections"]]
        printer.table(["id", "where", "user", "password"], rows, title=f"apache-airflow credentials ({state})")
        if not show_secrets:
            printer.info("passwords masked: add --show-secrets to print them")
    return 0
