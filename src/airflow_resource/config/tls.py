"""TLS of the api-server and the lifetimes of tokens and sessions: which files, which Airflow options,
and the guard that keeps a network-facing api-server from serving in clear (docs/tls.md).

Files of a home with tls on (stack/tls_files.py writes them at start, all root's):
  tls/ca.pem          the CA clients trust (generated, or a copy of the chain of tls_cert_file)
  tls/server.pem      the api-server's certificate followed by its chain ([api] ssl_cert of every component)
  tls/ca-key.pem      the generated CA's key (0600): re-issues the server certificate when its names change
  tls/server-key.pem  the generated server key (0600); a given key stays where tls_key_file says
The server key reaches the api-server only as a memfd (the launcher's APACHE_AIRFLOW_MEMFD_VARS): a key file
the service user could read, every task could read too.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from airflow_resource.config.settings import BY_NAME, INSECURE_ACK, Settings
from airflow_resource.errors import CommandError

TLS_DIR = "tls"
CA_FILE, CA_KEY_FILE = "ca.pem", "ca-key.pem"
SERVER_CERT_FILE, SERVER_KEY_FILE = "server.pem", "server-key.pem"
SSL_KEY_ENV = "AIRFLOW__API__SSL_KEY"   # the api-server's: the key's PEM, which the launcher turns into a memfd
API_CA_ENV = "APACHE_AIRFLOW_API_CA_FILE"  # our own REST clients in daemons (api.py): the CA to verify with
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def tls_dir(s: Settings) -> Path:
    return s.home / TLS_DIR


def server_cert(s: Settings) -> Path:
    return tls_dir(s) / SERVER_CERT_FILE


def ca_file(s: Settings) -> Path | None:
    """What a client of this stack verifies the api-server with; None without TLS."""
    return tls_dir(s) / CA_FILE if s.tls_on else None


def server_key(s: Settings) -> Path:
    return Path(s.tls_key_file) if s.tls_key_file else tls_dir(s) / SERVER_KEY_FILE


def generated(s: Settings) -> bool:
    """The stack makes its own CA and certificate (no tls_cert_file given)."""
    return s.tls_on and not s.tls_cert_file


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name (or a wildcard address): it may answer other machines


def check(s: Settings) -> None:
    """Refuse what start must not go on with (before anything is written): a network-facing api-server
    without TLS unless acknowledged, half a certificate, an http:// public URL in front of TLS."""
    if not s.tls_on and not is_loopback(s.api_host) and s.api_insecure.strip().lower() != INSECURE_ACK:
        raise CommandError(
            f"api_host {s.api_host!r} serves the network without TLS: the admin password, API tokens and "
            "the UI's session cookie would cross it in clear",
            f"turn TLS on ({BY_NAME['tls'].env}=on: a CA and certificate are generated into {tls_dir(s)}, or "
            f"give {BY_NAME['tls_cert_file'].env} and {BY_NAME['tls_key_file'].env}); or bind to loopback "
            f"({BY_NAME['api_host'].env}=127.0.0.1); or accept the risk with "
            f"{BY_NAME['api_insecure'].env}={INSECURE_ACK}")
    if not s.tls_on:
        return
    if bool(s.tls_cert_file) != bool(s.tls_key_file):
        given, missing = ("tls_cert_file", "tls_key_file") if s.tls_cert_file else ("tls_key_file", "tls_cert_file")
        raise CommandError(f"{given} is set but {missing} is not",
                           f"set both {BY_NAME['tls_cert_file'].env} and {BY_NAME['tls_key_file'].env}, or neither "
                           "(then a certificate is generated)")
    if s.base_url.lower().startswith("http://"):
        raise CommandError(f"base_url {s.base_url} is http:// while tls is on",
                           f"set {BY_NAME['base_url'].env} to the https:// URL users open")


def insecure_warning(s: Settings) -> str | None:
    """status' standing warning while a network-facing api-server runs without TLS."""
    if s.tls_on or is_loopback(s.api_host):
        return None
    return (f"the api-server listens on {s.api_host} without TLS ({BY_NAME['api_insecure'].env}={INSECURE_ACK}): "
            f"passwords and tokens cross the network in clear; {BY_NAME['tls'].env}=on fixes it")


def server_names(s: Settings, hostname: str) -> list[str]:
    """The names the generated certificate covers: every way this machine's clients reach the api-server."""
    names = ["localhost", "127.0.0.1", "::1", hostname]
    for extra in (s.api_host, s.api_local_host):
        if extra and extra not in ("0.0.0.0", "::"):
            names.append(extra)
    if s.base_url:
        from urllib.parse import urlsplit

        host = urlsplit(s.base_url).hostname
        if host:
            names.append(host)
    return list(dict.fromkeys(n for n in names if n))


def airflow_env(s: Settings) -> dict[str, str]:
    """Airflow options every component gets (no secret in them): the certificate the api-server serves, which
    the task SDK's client of the Execution API also loads as a CA (airflow/sdk/api/client.py: `[api] ssl_cert`
    beside certifi, so tasks still reach public HTTPS), Secure cookies, and the lifetimes."""
    env = {
        "AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME": str(s.api_token_minutes * 60),
        "AIRFLOW__FAB__SESSION_LIFETIME_MINUTES": str(s.ui_session_minutes),
    }
    if s.tls_on:
        env.update({
            "AIRFLOW__API__SSL_CERT": str(server_cert(s)),
            # FAB's Flask session cookie; Airflow's _token cookie is Secure whenever [api] ssl_cert is set.
            "AIRFLOW__FAB__COOKIE_SECURE": "True",
            "AIRFLOW__FAB__COOKIE_SAMESITE": "Lax",
        })
    return env
