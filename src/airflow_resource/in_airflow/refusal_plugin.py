"""Airflow plugin of the resource: every refused credential or permission in the event log.

Installed as `<plugins>/resource_refusals.py`, which imports this module; Airflow 3 adds a plugin's
`fastapi_root_middlewares` to the api-server's app. The middleware watches the status of each response
to a request that presented a credential (an `Authorization` header or the UI's `_token` cookie): a 401
or 403 becomes one `resource.access.refused` row in Airflow's event log (event_log.py), with the route,
Airflow's own reason ("Token Expired", "Invalid JWT token": a wrong key, signature or audience;
"Forbidden": a valid user without the permission, e.g. a team's user on another team's DAG) and what
the token claimed (read, not trusted: the signature is Airflow's to check). Requests with no credential
(the UI before its login) and the login routes (login_guard_plugin.py records those) are not recorded.

A client that keeps being refused cannot flood the table: each api-server worker records at most
RECORDS_PER_WINDOW refusals per client per WINDOW_S; the next recorded one says how many it passed over.
Nothing here changes a response.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_resource.in_airflow import login_limit
from airflow_resource.in_airflow.event_log import clean, in_thread, write_event

EVENT = "resource.access.refused"
REFUSED = (401, 403)
RECORDS_PER_WINDOW, WINDOW_S = 30, 60
MAX_DETAIL = 200
MAX_BODY = 2048  # of a refusal's body, kept to read its detail
TOKEN_COOKIE = b"_token"
CLAIMS = ("sub", "aud", "iss", "exp", "iat")


def credential(headers: dict[bytes, bytes]) -> tuple[str, str]:
    """(where the credential came from, the bearer token or "") of a request; ("", "") for none."""
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth:
        scheme, _, token = auth.partition(" ")
        return ("bearer", token.strip()) if scheme.lower() == "bearer" else (clean(scheme.lower(), 20), "")
    for part in headers.get(b"cookie", b"").split(b";"):
        name, _, value = part.strip().partition(b"=")
        if name == TOKEN_COOKIE and value:
            return "cookie", value.decode("latin-1")
    return "", ""


def claims_of(token: str) -> dict[str, Any]:
    """What a JWT says about itself, unverified (only to describe the refusal); {} when it is no JWT."""
    try:
        header_b64, payload_b64 = token.split(".")[:2]
        header = json.loads(_unb64(header_b64))
        payload = json.loads(_unb64(payload_b64))
    except (ValueError, TypeError):
        return {}
    if not isinstance(payload, dict) or not isinstance(header, dict):
        return {}
    out = {k: clean(payload[k]) for k in CLAIMS if k in payload}
    if "kid" in header:
        out["kid"] = clean(header["kid"])
    return out


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def detail_of(body: bytes) -> str:
    """Airflow's reason: the `detail` of its JSON error body, else the body's start."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return clean(body.decode("utf-8", "replace"), MAX_DETAIL)
    detail = data.get("detail", "") if isinstance(data, dict) else ""
    return clean(detail if isinstance(detail, str) else json.dumps(detail), MAX_DETAIL)


def owner_of(claims: dict[str, Any], detail: str) -> str:
    """The user name behind a token Airflow accepted but refused the permission ("Forbidden"): FAB's
    tokens name the user by id in `sub`. For any other refusal the claims are the client's word."""
    sub = claims.get("sub", "")
    if detail != "Forbidden" or not sub.isdigit():
        return ""
    try:
        from sqlalchemy import text

        from airflow.utils.session import create_session

        with create_session() as session:
            name = session.execute(text("SELECT username FROM ab_user WHERE id = :id"), {"id": int(sub)}).scalar()
        return clean(name or "")
    except Exception:  # noqa: BLE001 - the row is written without an owner
        return ""


def record(event: dict[str, Any], claims: dict[str, Any]) -> None:
    """In a thread: name the owner, then write the row."""
    write_event(EVENT, owner_of(claims, event.get("detail", "")), {**event, "token": claims} if claims else event)


class Throttle:
    """At most `per_window` records per client per `window_s` in one process."""

    def __init__(self, per_window: int = RECORDS_PER_WINDOW, window_s: int = WINDOW_S, clock=time.monotonic):
        self.window = login_limit.MemoryWindow(login_limit.Limit(per_window, window_s), clock)
        self.passed_over: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, client: str) -> tuple[bool, int]:
        """(record this one?, how many were passed over since the last recorded one)."""
        taken, _ = self.window.take(client)
        with self._lock:
            if taken > self.window.limit.max_failures:
                self.passed_over[client] = self.passed_over.get(client, 0) + 1
                return False, 0
            return True, self.passed_over.pop(client, 0)


class RefusalRecorder:
    """A plain ASGI middleware: watches the response status of requests that carry a credential."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.throttle = Throttle()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope.get("type") != "http" or login_limit.LOGIN_PATH.search(path):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        source, token = credential(headers)
        if not source:
            await self.app(scope, receive, send)
            return
        seen: dict[str, Any] = {}

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body" and seen.get("status") in REFUSED:
                seen["body"] = (seen.get("body", b"") + message.get("body", b""))[:MAX_BODY]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if seen.get("status") in REFUSED:
                await self._record(scope, path, source, token, seen)

    async def _record(self, scope: dict, path: str, source: str, token: str, seen: dict) -> None:
        client = (scope.get("client") or ("unknown", 0))[0]
        admitted, passed_over = self.throttle.admit(client)
        if not admitted:
            return
        event = {"client": client, "method": clean(scope.get("method", ""), 10), "path": clean(path, MAX_DETAIL),
                 "status": seen["status"], "detail": detail_of(seen.get("body", b"")), "credential": source}
        if passed_over:
            event["not_recorded_before"] = passed_over
        await in_thread(record, event, claims_of(token) if token else {})


class ResourceRefusalsPlugin(AirflowPlugin):
    name = "apache_airflow_resource_refusals"
    fastapi_root_middlewares = [{"middleware": RefusalRecorder, "args": [], "kwargs": {},
                                 "name": "apache-airflow resource: refused credentials in the event log"}]
