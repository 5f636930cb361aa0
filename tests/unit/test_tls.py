"""TLS of the api-server: the settings, the options every component gets, the API host guard, the generated
certificates (real keys, real files), the clients' verification against a real local HTTPS server, and the
security headers middleware."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from pathlib import Path

import pytest

from airflow_resource.config import airflow_config, tls
from airflow_resource.errors import CommandError
from airflow_resource.stack import components, supervisor, tls_files
from tests.unit import aio

pytestmark = pytest.mark.unit


def tls_home(make_settings, **flags):
    s = make_settings(tls="on", **flags)
    tls.tls_dir(s).mkdir(mode=0o750, parents=True, exist_ok=True)
    return s


# --- settings and derived options -------------------------------------------------------------------------

def test_tls_off_by_default_and_every_url_http(make_settings, sec):
    s = make_settings()
    assert not s.tls_on and s.api_url.startswith("http://")
    env = airflow_config.airflow_env(s, sec)
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://")
    assert "AIRFLOW__API__SSL_CERT" not in env and tls.SSL_KEY_ENV not in env


def test_tls_on_makes_every_derived_url_https_and_cookies_secure(make_settings, sec):
    s = make_settings(tls="on", api_port=51234)
    assert s.api_url == "https://127.0.0.1:51234"
    env = airflow_config.airflow_env(s, sec)
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "https://127.0.0.1:51234/execution/"
    assert env["AIRFLOW__API__SSL_CERT"] == str(s.home / "tls" / "server.pem")
    assert env["AIRFLOW__FAB__COOKIE_SECURE"] == "True"
    assert tls.ca_file(s) == s.home / "tls" / "ca.pem"


def test_lifetimes_default_to_one_hour_tokens_and_twelve_hour_sessions(make_settings, sec):
    env = airflow_config.airflow_env(make_settings(), sec)
    assert env["AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME"] == "3600"
    assert env["AIRFLOW__FAB__SESSION_LIFETIME_MINUTES"] == "720"
    env = airflow_config.airflow_env(make_settings(api_token_minutes=15, ui_session_minutes=60), sec)
    assert env["AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME"] == "900"
    assert env["AIRFLOW__FAB__SESSION_LIFETIME_MINUTES"] == "60"


def test_the_lifetimes_are_settings_not_airflow_overrides(make_settings):
    s = make_settings(environ={"AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME": "86400"})
    with pytest.raises(CommandError, match="JWT_EXPIRATION_TIME"):
        airflow_config.check_options(s)


@pytest.mark.parametrize("flags, bad", [({"tls": "maybe"}, "tls"), ({"api_insecure": "yes"}, "api_insecure")])
def test_a_bad_choice_is_refused_naming_the_setting(make_settings, flags, bad):
    with pytest.raises(CommandError, match=bad):
        make_settings(**flags)


# --- the API host guard -------------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "airflow.example.org"])
def test_a_network_facing_api_host_without_tls_is_refused_naming_the_fixes(make_settings, host):
    s = make_settings(api_host=host)
    with pytest.raises(CommandError) as exc:
        tls.check(s)
    assert "without TLS" in exc.value.message
    for fix in ("APACHE_AIRFLOW_TLS=on", "APACHE_AIRFLOW_API_HOST=127.0.0.1", "APACHE_AIRFLOW_API_INSECURE=acknowledged"):
        assert fix in exc.value.hint
    assert tls.insecure_warning(s) and "without TLS" in tls.insecure_warning(s)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_tls(make_settings, host):
    s = make_settings(api_host=host)
    tls.check(s)
    assert tls.insecure_warning(s) is None


def test_acknowledged_insecure_starts_but_keeps_warning(make_settings):
    s = make_settings(api_host="0.0.0.0", api_insecure="acknowledged")
    tls.check(s)
    assert "0.0.0.0" in tls.insecure_warning(s)


def test_tls_on_serves_the_network(make_settings):
    s = make_settings(api_host="0.0.0.0", tls="on")
    tls.check(s)
    assert tls.insecure_warning(s) is None


def test_half_a_certificate_and_an_http_public_url_are_refused(make_settings):
    with pytest.raises(CommandError, match="tls_cert_file is set but tls_key_file is not"):
        tls.check(make_settings(tls="on", tls_cert_file="/etc/x.pem"))
    with pytest.raises(CommandError, match="http:// while tls is on"):
        tls.check(make_settings(tls="on", base_url="http://example.org/airflow"))


# --- the key reaches the api-server alone, as a memfd --------------------------------------------------------

def test_the_server_key_goes_to_the_api_server_only_as_a_memfd_beside_the_jwt_key(make_settings, sec):
    s = tls_home(make_settings)
    extra = tls_files.api_server_env(s)
    assert extra[tls.SSL_KEY_ENV].startswith("-----BEGIN PRIVATE KEY-----")
    full = airflow_config.airflow_env(s, sec)
    assert tls.SSL_KEY_ENV not in full  # in no shared or secret part: never on a worker
    api = next(c for c in components.build(s, sec) if c.name == "api-server")
    env = supervisor.merge_env(supervisor.component_env(api, {}, full), extra)
    assert env[airflow_config.MEMFD_VARS_ENV].split(",") == ["AIRFLOW__API_AUTH__JWT_PRIVATE_KEY_PATH", tls.SSL_KEY_ENV]
    worker = next(c for c in components.build(s, sec) if c.name.startswith("worker-"))
    wenv = supervisor.component_env(worker, {}, full)
    assert tls.SSL_KEY_ENV not in wenv and wenv["AIRFLOW__API__SSL_CERT"] == str(tls.server_cert(s))


def test_nothing_extra_without_tls(make_settings):
    assert tls_files.api_server_env(make_settings()) == {}


def test_workers_and_triggerer_run_no_log_server(make_settings, sec):
    comps = {c.name: c for c in components.build(make_settings(workers=2), sec)}
    for name in ("triggerer", "worker-1", "worker-2"):
        assert "--skip-serve-logs" in comps[name].argv


# --- generated certificates ----------------------------------------------------------------------------------

def _chain(path: Path):
    from cryptography import x509

    return x509.load_pem_x509_certificates(path.read_bytes())


def test_generated_ca_and_server_certificate(make_settings):
    s = tls_home(make_settings, api_host="0.0.0.0")
    key_pem = tls_files.prepare(s)
    d = tls.tls_dir(s)
    for name, mode in (("ca.pem", 0o644), ("server.pem", 0o644), ("ca-key.pem", 0o600), ("server-key.pem", 0o600)):
        assert (d / name).stat().st_mode & 0o777 == mode, name
    assert key_pem == (d / "server-key.pem").read_bytes()
    leaf, ca = _chain(d / "server.pem")
    assert leaf.issuer == ca.subject and _chain(d / "ca.pem") == [ca]
    import socket

    for name in ("localhost", "127.0.0.1", "::1", socket.gethostname()):
        assert tls_files.covers(leaf, name), name
    assert not tls_files.covers(leaf, "other.example.org")


def test_a_second_start_keeps_both_and_a_new_name_reissues_the_server_certificate_only(make_settings):
    s = tls_home(make_settings)
    tls_files.prepare(s)
    d = tls.tls_dir(s)
    ca, server = (d / "ca.pem").read_bytes(), (d / "server.pem").read_bytes()
    tls_files.prepare(s)
    assert (d / "ca.pem").read_bytes() == ca and (d / "server.pem").read_bytes() == server
    s2 = tls_home(make_settings, api_host="192.0.2.7")
    tls_files.prepare(s2)
    assert (d / "ca.pem").read_bytes() == ca and (d / "server.pem").read_bytes() != server
    assert tls_files.covers(_chain(d / "server.pem")[0], "192.0.2.7")


def test_a_given_certificate_is_checked_and_copied(make_settings, tmp_path):
    ca_key, ca_cert = tls_files.make_ca("test CA")
    key, cert = tls_files.make_server(ca_key, ca_cert, ["airflow.example.org", "127.0.0.1"])
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(tls_files._cert_pem(cert) + tls_files._cert_pem(ca_cert))
    key_file.write_bytes(tls_files._pem_key(key))
    s = tls_home(make_settings, tls_cert_file=str(cert_file), tls_key_file=str(key_file))
    assert tls_files.prepare(s) == tls_files._pem_key(key)
    assert (tls.tls_dir(s) / "server.pem").read_bytes() == cert_file.read_bytes()
    assert not (tls.tls_dir(s) / "server-key.pem").exists()
    other_key, _ = tls_files.make_server(ca_key, ca_cert, ["x"])
    key_file.write_bytes(tls_files._pem_key(other_key))
    with pytest.raises(CommandError, match="does not belong to the certificate"):
        tls_files.prepare(s)
    key_file.write_bytes(tls_files._pem_key(key))
    with pytest.raises(CommandError, match="does not name 192.0.2.8"):
        tls_files.prepare(tls_home(make_settings, tls_cert_file=str(cert_file), tls_key_file=str(key_file),
                                   api_host="192.0.2.8"))


# --- clients verify against the stack's CA: a real HTTPS server -------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    tokens: list[str] = []

    def log_message(self, *args):
        pass

    def _json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # /auth/token: a new token each login
        self.rfile.read(int(self.headers.get("content-length", 0)))
        _Handler.tokens.append(f"t{len(_Handler.tokens)}")
        self._json(201, {"access_token": _Handler.tokens[-1]})

    def do_GET(self):  # only the newest token is valid: an older one has "expired"
        if self.headers.get("authorization") != f"Bearer {_Handler.tokens[-1] if _Handler.tokens else ''}" \
                and self.path.startswith("/api/v2/dags"):
            self._json(401, {"detail": "Token expired"})
            return
        self._json(200, {"version": "3.3.2", "path": self.path})


@pytest.fixture
def https_server(make_settings):
    s = tls_home(make_settings)
    tls_files.prepare(s)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls.server_cert(s), tls.tls_dir(s) / "server-key.pem")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Handler.tokens = []
    yield f"https://127.0.0.1:{server.server_address[1]}", str(tls.ca_file(s))
    server.shutdown()


def test_probes_verify_with_the_ca_and_refuse_without_it(https_server):
    from airflow_resource.stack import probes

    url, ca = https_server
    assert probes.http_json(f"{url}/api/v2/version", ca)["version"] == "3.3.2"
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        probes.http_json(f"{url}/api/v2/version")


def test_the_rest_client_verifies_and_logs_in_again_when_its_token_expired(https_server):
    from airflow_resource.api import AirflowAPI

    url, ca = https_server
    with pytest.raises(CommandError, match="failed the TLS check"):
        AirflowAPI(url, "u", "p").get("/dags")
    api = AirflowAPI(url, "u", "p", ca_file=ca)
    assert api.get("/dags")["path"] == "/api/v2/dags"
    api._token = "an-expired-one"
    assert api.get("/dags")["path"] == "/api/v2/dags"  # one 401, a new login, the request again
    assert _Handler.tokens == ["t0", "t1"]


def test_spki_pin_is_base64_sha256(https_server, make_settings):
    import base64

    pin = tls_files.spki_sha256(tls.server_cert(tls_home(make_settings)).read_bytes())
    assert len(base64.b64decode(pin)) == 32


# --- security headers -------------------------------------------------------------------------------------------

def _headers(scheme: str, app_headers=()):
    from airflow_resource.in_airflow.headers_plugin import SecurityHeadersMiddleware

    sent = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": list(app_headers)})
        await send({"type": "http.response.body", "body": b"ok"})

    async def send(message):
        sent.append(message)

    aio.run(SecurityHeadersMiddleware(app)({"type": "http", "scheme": scheme, "path": "/"}, None, send))
    return dict(sent[0]["headers"]), sent[1]["body"]


def test_security_headers_on_every_response_hsts_only_over_https():
    headers, body = _headers("http")
    assert headers[b"x-frame-options"] == b"SAMEORIGIN" and headers[b"x-content-type-options"] == b"nosniff"
    assert headers[b"referrer-policy"] == b"same-origin" and b"strict-transport-security" not in headers
    csp = dict(d.strip().split(" ", 1) for d in headers[b"content-security-policy"].decode().split(";"))
    assert csp == {"frame-ancestors": "'self'", "object-src": "'none'", "base-uri": "'self'", "form-action": "'self'"}
    assert body == b"ok"
    headers, _ = _headers("https", [(b"x-frame-options", b"DENY")])
    assert headers[b"strict-transport-security"].startswith(b"max-age=")
    assert headers[b"x-frame-options"] == b"DENY"  # what the app set stays
