"""probes: Probe.check against a tiny local HTTP server and fake contexts; a probe never raises."""

from __future__ import annotations

import base64
import http.server
import json
import socket
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest

from airflow_resource.stack import probes
from airflow_resource.stack.probes import Probe, ProbeContext

pytestmark = pytest.mark.unit

PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
              "no_proxy", "NO_PROXY")

HEALTHY = {
    "metadatabase": {"status": "healthy"},
    "scheduler": {"status": "healthy", "latest_scheduler_heartbeat": "2030-01-01T00:00:00+00:00"},
    "triggerer": {"status": "healthy", "latest_triggerer_heartbeat": "2030-01-01T00:00:01+00:00"},
    "dag_processor": {"status": "healthy", "latest_dag_processor_heartbeat": "2030-01-01T00:00:02+00:00"},
}


class Server:
    """A local HTTP server on a free port with the api-server's and Flower's endpoints."""

    def __init__(self) -> None:
        self.health: Any = HEALTHY
        self.hits: dict[str, int] = {}
        self.basic_auth = ("admin", "flowerpw")
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def reply(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                outer.hits[self.path] = outer.hits.get(self.path, 0) + 1
                if self.path == "/health":
                    self.reply(200, b"OK")
                elif self.path == "/broken":
                    self.reply(500, b"boom")
                elif self.path == "/healthcheck":
                    want = "Basic " + base64.b64encode(":".join(outer.basic_auth).encode()).decode()
                    if self.headers.get("Authorization") == want:
                        self.reply(200, b"OK")
                    else:
                        self.reply(401, b"auth")
                elif self.path == "/api/v2/version":
                    self.reply(200, json.dumps({"version": "3.3.2"}).encode(), "application/json")
                elif self.path == "/api/v2/monitor/health":
                    self.reply(200, json.dumps(outer.health).encode(), "application/json")
                else:
                    self.reply(404, b"no")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def ctx(self) -> ProbeContext:
        return ProbeContext(self.url, "redis://127.0.0.1:1/0")


@pytest.fixture
def no_proxy(monkeypatch):
    """The local server must be reached directly, whatever proxy the caller's environment names."""
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(urllib.request, "_opener", None)  # urlopen caches an opener built from the environment


@pytest.fixture
def server(no_proxy):
    srv = Server()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    srv.thread.join(timeout=5)


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: bound and released, so the connection is refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


class FakeContext(ProbeContext):
    """A ProbeContext with canned shared answers: no network at all."""

    def __init__(self, health: tuple[bool, Any] = (True, HEALTHY), pings: tuple[bool, Any] = (True, {})):
        super().__init__("http://127.0.0.1:1", "redis://127.0.0.1:1/0")
        self._health, self._pings = health, pings

    def health_json(self):
        return self._health

    def celery_pings(self):
        return self._pings


# ---------------------------------------------------------------- http


def test_http_probe_ok(server):
    assert Probe("http", f"{server.url}/health").check(server.ctx()) == (True, "HTTP 200")
    assert server.hits["/health"] == 1


def test_http_probe_error_status(server):
    assert Probe("http", f"{server.url}/broken").check(server.ctx()) == (False, "HTTP 500")
    assert Probe("http", f"{server.url}/missing").check(server.ctx()) == (False, "HTTP 404")


def test_http_probe_closed_port(closed_port, no_proxy):
    ok, detail = Probe("http", f"http://127.0.0.1:{closed_port}/health").check(FakeContext())
    assert ok is False
    assert detail and "refused" in detail.lower()


def test_http_probe_basic_auth(server):
    good = Probe("http", f"{server.url}/healthcheck", secret="flowerpw", user="admin")
    bad = Probe("http", f"{server.url}/healthcheck", secret="wrong", user="admin")
    anonymous = Probe("http", f"{server.url}/healthcheck")
    assert good.check(server.ctx()) == (True, "HTTP 200")
    assert bad.check(server.ctx()) == (False, "HTTP 401")
    assert anonymous.check(server.ctx()) == (False, "HTTP 401")


def test_http_probe_bad_url_does_not_raise():
    ok, detail = Probe("http", "not a url").check(FakeContext())
    assert ok is False and detail


def test_http_probe_ignores_proxy_environment(server, monkeypatch, closed_port):
    """Fixed: probes use their own opener without proxies, so a dead $http_proxy does not make a healthy stack look down."""
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setattr(urllib.request, "_opener", None)
    assert Probe("http", f"{server.url}/health").check(server.ctx()) == (True, "HTTP 200")


# ---------------------------------------------------------------- api and health_key against the server


def test_api_probe_healthy(server):
    assert Probe("api").check(server.ctx()) == (True, "Airflow 3.3.2")


def test_api_probe_database_down(server):
    server.health = {**HEALTHY, "metadatabase": {"status": "unhealthy"}}
    assert Probe("api").check(server.ctx()) == (False, "metadatabase unhealthy")


def test_api_probe_server_down(closed_port, no_proxy):
    ctx = ProbeContext(f"http://127.0.0.1:{closed_port}", "redis://127.0.0.1:1/0")
    ok, detail = Probe("api").check(ctx)
    assert ok is False and "refused" in detail.lower()


@pytest.mark.parametrize("key, beat", [
    ("scheduler", "2030-01-01T00:00:00+00:00"),
    ("triggerer", "2030-01-01T00:00:01+00:00"),
    ("dag_processor", "2030-01-01T00:00:02+00:00"),
])
def test_health_key_probe_healthy(server, key, beat):
    assert Probe("health_key", key).check(server.ctx()) == (True, f"heartbeat {beat}")


def test_health_key_probe_unhealthy(server):
    server.health = {**HEALTHY, "triggerer": {"status": "unhealthy", "latest_triggerer_heartbeat": "T0"}}
    assert Probe("health_key", "triggerer").check(server.ctx()) == (False, "triggerer unhealthy (last heartbeat T0)")


def test_health_json_is_fetched_once_per_context(server):
    ctx = server.ctx()
    results = [Probe("api").check(ctx)] + [Probe("health_key", k).check(ctx)
                                           for k in ("scheduler", "triggerer", "dag_processor")]
    assert all(ok for ok, _ in results)
    assert server.hits["/api/v2/monitor/health"] == 1
    Probe("health_key", "scheduler").check(server.ctx())  # a new context fetches again
    assert server.hits["/api/v2/monitor/health"] == 2


def test_health_key_when_api_is_down(closed_port, no_proxy):
    ctx = ProbeContext(f"http://127.0.0.1:{closed_port}", "redis://127.0.0.1:1/0")
    ok, detail = Probe("health_key", "scheduler").check(ctx)
    assert ok is False
    assert detail.startswith("api-server health unavailable: ")


# ---------------------------------------------------------------- fake contexts


def test_health_key_missing_entry():
    ctx = FakeContext(health=(True, {"metadatabase": {"status": "healthy"}}))
    assert Probe("health_key", "triggerer").check(ctx) == (False, "triggerer unknown (last heartbeat None)")


def test_health_key_with_fake_unavailable_health():
    ctx = FakeContext(health=(False, "HTTP 503"))
    assert Probe("health_key", "scheduler").check(ctx) == (False, "api-server health unavailable: HTTP 503")


def test_celery_probe():
    ctx = FakeContext(pings=(True, {"worker-1@h": {"ok": "pong"}}))
    assert Probe("celery", "worker-1@h").check(ctx) == (True, "ping ok")
    assert Probe("celery", "worker-2@h").check(ctx) == (False, "no answer to celery ping")
    down = FakeContext(pings=(False, "ConnectionError: refused"))
    assert Probe("celery", "worker-1@h").check(down) == (False, "broker: ConnectionError: refused")


def test_unknown_kind_does_not_raise():
    ok, detail = Probe("nonsense").check(FakeContext())
    assert ok is False
    assert "nonsense" in detail


def test_probe_exceptions_become_details(monkeypatch):
    def boom(p, ctx):
        raise RuntimeError("kaput\nsecond line")

    monkeypatch.setitem(probes.PROBES, "http", boom)
    assert Probe("http", "x").check(FakeContext()) == (False, "RuntimeError: kaput")


def test_context_once_caches_values_and_errors():
    ctx = ProbeContext("http://x", "redis://x")
    calls = []

    def fetch():
        calls.append(1)
        raise ValueError("nope")

    assert ctx.once("k", fetch) == (False, "ValueError: nope")
    assert ctx.once("k", fetch) == (False, "ValueError: nope")
    assert len(calls) == 1
    assert ctx.once("v", lambda: {"a": 1}) == (True, {"a": 1})


@pytest.mark.parametrize("exc, text", [
    (urllib.error.HTTPError("http://x", 503, "unavailable", None, None), "HTTP 503"),
    (urllib.error.URLError("timed out"), "timed out"),
    (RuntimeError("first\nsecond"), "RuntimeError: first"),
    (RuntimeError(""), "RuntimeError"),
])
def test_describe(exc, text):
    assert probes._describe(exc) == text
