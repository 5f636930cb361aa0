"""Readiness probes: real requests with short timeouts, one per component kind.

A probe answers (ok, detail). Probes of one status call share a ProbeContext,
so the api-server's health JSON and the Celery ping are fetched once.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

PROBE_TIMEOUT_S = 1.0
CELERY_PING_TIMEOUT_S = 0.6
HEALTHY = "healthy"


class ProbeContext:
    """Per-call cache of shared answers (health JSON, Celery ping)."""

    def __init__(self, api_url: str, broker_url: str, workers: int = 0, ca_file: str | None = None):
        self.api_url = api_url
        self.ca_file = ca_file  # the stack's CA when the api-server serves HTTPS
        self.broker_url = broker_url
        self.workers = workers  # answers to wait for: the ping returns as soon as all have answered
        self._lock = threading.Lock()
        self._cache: dict[str, Any] = {}

    def once(self, key: str, fetch: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._cache:
                try:
                    self._cache[key] = (True, fetch())
                except Exception as exc:  # noqa: BLE001 - the probe reports it
                    self._cache[key] = (False, _describe(exc))
            return self._cache[key]

    def health_json(self) -> tuple[bool, Any]:
        return self.once("health", lambda: http_json(f"{self.api_url}/api/v2/monitor/health", self.ca_file))

    def celery_pings(self) -> tuple[bool, Any]:
        return self.once("celery", lambda: celery_ping(self.broker_url, self.workers))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip(": ")


@functools.lru_cache(maxsize=8)
def _opener(ca_file: str | None) -> urllib.request.OpenerDirector:
    """Probes talk to loopback: never through an http_proxy from the caller's environment. HTTPS is verified
    against the stack's CA (ca_file), nothing else."""
    handlers: list[Any] = [urllib.request.ProxyHandler({})]
    if ca_file:
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca_file)))
    return urllib.request.build_opener(*handlers)


def http_get(url: str, auth: tuple[str, str] | None = None, timeout: float = PROBE_TIMEOUT_S,
             ca_file: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with _opener(ca_file).open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_json(url: str, ca_file: str | None = None) -> Any:
    code, body = http_get(url, ca_file=ca_file)
    if code != 200:
        raise RuntimeError(f"HTTP {code} from {url}")
    return json.loads(body)


def celery_ping(broker_url: str, expected: int = 0) -> dict[str, Any]:
    """Broadcast Celery's ping over the broker; answers keyed by worker hostname."""
    from celery import Celery  # lazy: only status/start need it

    app = Celery(broker=broker_url)
    app.conf.broker_connection_retry_on_startup = False
    app.conf.broker_connection_max_retries = 0
    try:
        replies = app.control.ping(timeout=CELERY_PING_TIMEOUT_S, limit=expected or None) or []
    finally:
        app.close()
    return {name: answer for reply in replies for name, answer in reply.items()}


@dataclass(frozen=True)
class Probe:
    kind: str
    target: str = ""            # URL, health-JSON key or Celery hostname
    secret: str = ""            # password for basic auth / databases, never printed
    user: str = ""

    def check(self, ctx: ProbeContext, started_at: float | None = None) -> tuple[bool, str]:
        """started_at: when the process started (epoch s); a heartbeat older than that is a dead process's."""
        try:
            if self.kind == "health_key":
                return _health_key(self, ctx, started_at)
            if self.kind == "heartbeat_file":
                return _heartbeat_file(self, started_at)
            return PROBES[self.kind](self, ctx)
        except Exception as exc:  # noqa: BLE001 - a failing probe is a state, not a crash
            return False, _describe(exc)


def _postgres(p: Probe, _: ProbeContext) -> tuple[bool, str]:
    import psycopg2  # installed with Airflow's postgres provider

    conn = psycopg2.connect(p.target, connect_timeout=max(1, int(PROBE_TIMEOUT_S)))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
    finally:
        conn.close()
    return True, "SELECT 1 ok"


def _redis(p: Probe, _: ProbeContext) -> tuple[bool, str]:
    import redis  # installed with Airflow's redis provider

    client = redis.Redis.from_url(p.target, socket_timeout=PROBE_TIMEOUT_S, socket_connect_timeout=PROBE_TIMEOUT_S)
    try:
        return bool(client.ping()), "PING ok"
    finally:
        client.close()


def _api(p: Probe, ctx: ProbeContext) -> tuple[bool, str]:
    version = http_json(f"{ctx.api_url}/api/v2/version", ctx.ca_file)
    ok, health = ctx.health_json()
    if not ok:
        return False, str(health)
    db = health.get("metadatabase", {}).get("status")
    if db != HEALTHY:
        return False, f"metadatabase {db}"
    return True, f"Airflow {version.get('version')}"


def _health_key(p: Probe, ctx: ProbeContext, started_at: float | None = None) -> tuple[bool, str]:
    ok, health = ctx.health_json()
    if not ok:
        return False, f"api-server health unavailable: {health}"
    entry = health.get(p.target) or {}
    state = entry.get("status")
    beat = entry.get("latest_" + ("dag_processor" if p.target == "dag_processor" else p.target) + "_heartbeat")
    if state != HEALTHY:
        return False, f"{p.target} {state or 'unknown'} (last heartbeat {beat})"
    if started_at is not None and beat and datetime.fromisoformat(beat).timestamp() < started_at:
        return False, f"no heartbeat since the process started (last {beat})"
    return True, f"heartbeat {beat}"


BACKUP_REPORT_MAX_BYTES = 64 * 1024
HEARTBEAT_FILE_STALE_S = 60.0  # the housekeeper touches its file every 10 s


def _heartbeat_file(p: Probe, started_at: float | None = None, now: float | None = None) -> tuple[bool, str]:
    """A loop that touches a file each pass: alive while the file is fresh and newer than the process."""
    try:
        mtime = os.stat(p.target).st_mtime
    except FileNotFoundError:
        return False, "no heartbeat yet"
    age = (time.time() if now is None else now) - mtime
    if started_at is not None and mtime < started_at:
        return False, "no heartbeat since the process started"
    if age > HEARTBEAT_FILE_STALE_S:
        return False, f"last heartbeat {age:.0f} s ago"
    return True, f"heartbeat {age:.0f} s ago"


def _http_ok(p: Probe, _: ProbeContext) -> tuple[bool, str]:
    code, _body = http_get(p.target, auth=(p.user, p.secret) if p.user else None)
    return code == 200, f"HTTP {code}"


def _celery(p: Probe, ctx: ProbeContext) -> tuple[bool, str]:
    ok, replies = ctx.celery_pings()
    if not ok:
        return False, f"broker: {replies}"
    if p.target in replies:
        return True, "ping ok"
    return False, "no answer to celery ping"


def _backup_schedule(p: Probe, _: ProbeContext) -> tuple[bool, str]:
    """The scheduled backup's own report (run/backup-schedule.json): healthy unless the last try failed. The
    service user writes it: read as a plain, small file (a FIFO there must not hang a root `status`)."""
    from airflow_resource import safe_files

    report = json.loads(safe_files.read_file(p.target, BACKUP_REPORT_MAX_BYTES))
    if report.get("last_error"):
        return False, f"last backup failed at {report.get('last_error_at')}: {report['last_error']}"
    last = report.get("last_ok")
    done = f"last {last['file']} at {last['at']}; " if last else ""
    return True, f"{done}next at {report.get('next_due')}"


PROBES: dict[str, Callable[[Probe, ProbeContext], tuple[bool, str]]] = {
    "postgres": _postgres,
    "redis": _redis,
    "api": _api,
    "http": _http_ok,
    "celery": _celery,
    "backup_schedule": _backup_schedule,
}
