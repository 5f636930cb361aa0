"""Airflow plugin of the resource: login protection and failed logins in the event log.

Installed as `<plugins>/resource_login_guard.py`, which imports this module; Airflow 3 adds a plugin's
`fastapi_root_middlewares` to the api-server's app (airflow.api_fastapi.app.init_plugins), in front of
every route. This middleware looks only at login attempts: POST /auth/token and /auth/token/cli (the
FAB auth manager's FastAPI routes, which have no rate limit of their own: FAB's `[fab] auth_rate_limited`
covers only its Flask blueprint) and POST /auth/login/ (the UI's form). It
- refuses a client past its failures (login_limit.py) with 429 and Retry-After, before the password
  is checked; the counters are in Redis, so every api-server worker sees the same ones;
- writes each failed login (`resource.login.failed`, the name tried as owner) and the first refusal of
  a window (`resource.login.blocked`) into Airflow's event log (the `log` table /api/v2/eventLogs reads)
  (event_log.py), in a thread, so the event loop does not wait on the database.
It also moves Flower's queued login events (flower_guard.py: Flower holds no database credentials) from
Redis into the event log, every DRAIN_EVERY_S, with the time Flower saw them.
Every other request passes untouched. Nothing here may break a login: a Redis or database error is
logged and the attempt goes ahead (fail open: the password check still applies).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import urllib.parse
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_resource.in_airflow import login_limit
from airflow_resource.in_airflow.event_log import clean, in_thread, write_event

log = logging.getLogger(__name__)
DRAIN_EVERY_S, DRAIN_BATCH = 5, 100
MAX_BODY = 64 * 1024  # a login is a few hundred bytes; a larger body passes through unread
FAILED, BLOCKED = login_limit.FAILED_EVENT, login_limit.BLOCKED_EVENT


def username_of(body: bytes, content_type: str) -> str:
    """The user name a login tried (JSON body of the token routes, or the UI's form), cut and cleaned:
    it is the client's text, written into the event log."""
    name: Any = ""
    try:
        if "json" in content_type:
            data = json.loads(body or b"{}")
            name = data.get("username", "") if isinstance(data, dict) else ""
        else:
            name = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("username", [""])[0]
    except ValueError:
        name = ""
    return clean(name)


def route_of(path: str) -> str:
    return "ui-form" if login_limit.FORM_PATH.search(path) else path.rsplit("/auth/", 1)[-1]


class RedisWindow:
    """The per-client windows in Redis (login_limit.TAKE_SLOT_LUA), one client per api-server worker."""

    def __init__(self, url: str, limit: login_limit.Limit) -> None:
        self.url, self.limit = url, limit
        self._redis: Any = None
        self._script: Any = None
        self._pop: Any = None

    def _client(self) -> Any:
        if self._redis is None:
            import redis.asyncio

            self._redis = redis.asyncio.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
            self._script = self._redis.register_script(login_limit.TAKE_SLOT_LUA)
        return self._redis

    async def take(self, client: str) -> tuple[int, int]:
        self._client()
        taken, ttl = await self._script(keys=[login_limit.KEY_PREFIX + client], args=[self.limit.window_s])
        return int(taken), login_limit.retry_after(int(ttl))

    async def give_back(self, client: str) -> None:
        await self._client().decr(login_limit.KEY_PREFIX + client)

    async def pop_events(self, count: int) -> list[bytes]:
        """Up to `count` of Flower's queued events, taken off the queue."""
        if self._pop is None:
            self._pop = self._client().register_script(login_limit.POP_EVENTS_LUA)
        return list(await self._pop(keys=[login_limit.EVENTS_KEY], args=[count]))


def write_queued(items: list[bytes]) -> int:
    """Flower's queued events into the event log (in a thread); one that does not parse is skipped."""
    written = 0
    for raw in items:
        try:
            item = json.loads(raw)
            when = datetime.datetime.fromisoformat(item["dttm"])
            event, owner, extra = item["event"], str(item.get("owner", "")), dict(item.get("extra", {}))
        except (ValueError, KeyError, TypeError):
            log.warning("apache-airflow resource: a queued Flower login event did not parse; skipped")
            continue
        if event not in (FAILED, BLOCKED):
            continue  # the queue is Redis's: only the two events Flower's guard writes are taken
        write_event(event, clean(owner), extra, when)
        written += 1
    return written


class _MemoryWindow:
    """The fallback when no Redis is configured: per worker, so per process, but still a limit."""

    def __init__(self, limit: login_limit.Limit) -> None:
        self._w = login_limit.MemoryWindow(limit)

    async def take(self, client: str) -> tuple[int, int]:
        return self._w.take(client)

    async def give_back(self, client: str) -> None:
        self._w.give_back(client)


class LoginGuardMiddleware:
    """A plain ASGI middleware: only POSTs to the login routes are read (their small body buffered and
    replayed to the app); nothing else is touched."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.limit = login_limit.from_env()
        url = os.environ.get(login_limit.REDIS_URL_ENV, "")
        self.window: Any = RedisWindow(url, self.limit) if url else _MemoryWindow(self.limit)
        self._drain: Any = None

    async def _drain_flower_events(self) -> None:
        while True:
            await asyncio.sleep(DRAIN_EVERY_S)
            try:
                items = await self.window.pop_events(DRAIN_BATCH)
            except Exception:  # noqa: BLE001 - Redis away: try again next round
                log.debug("apache-airflow resource: Flower's login events not read", exc_info=True)
                continue
            if items:
                await in_thread(write_queued, items)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self._drain is None and isinstance(self.window, RedisWindow):  # on the first scope (lifespan or http)
            self._drain = asyncio.ensure_future(self._drain_flower_events())
        if scope.get("type") != "http" or not login_limit.is_login(scope.get("method", ""), scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        client = (scope.get("client") or ("unknown", 0))[0]
        taken = 0
        if self.limit.enabled:
            try:
                taken, left = await self.window.take(client)
            except Exception:  # noqa: BLE001 - fail open, see the module docstring
                log.warning("apache-airflow resource: login limit unavailable; attempt let through", exc_info=True)
                taken = 0
            if taken and login_limit.blocked(self.limit, taken):
                if login_limit.first_block(self.limit, taken):
                    await in_thread(write_event, BLOCKED, "", {
                        "client": client, "route": route_of(path), "max_failures": self.limit.max_failures,
                        "window_seconds": self.limit.window_s, "retry_after": left})
                await _refuse(send, path, left)
                return
        body, receive = await _buffered(receive)
        seen: dict[str, Any] = {}

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                seen["location"] = next((v.decode("latin-1") for k, v in message.get("headers", [])
                                         if k.lower() == b"location"), "")
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            result = login_limit.outcome(path, seen.get("status", 0), seen.get("location", ""))
            await self._settle(scope, path, client, body, result, taken)

    async def _settle(self, scope: dict, path: str, client: str, body: bytes | None, result: str, taken: int) -> None:
        if result != "failed" and taken:
            try:
                await self.window.give_back(client)
            except Exception:  # noqa: BLE001
                log.warning("apache-airflow resource: could not update the login limit", exc_info=True)
        if result == "failed":
            headers = dict(scope.get("headers") or [])
            name = username_of(body or b"", headers.get(b"content-type", b"").decode("latin-1"))
            extra: dict[str, Any] = {"client": client, "route": route_of(path), "reason": "invalid credentials"}
            if self.limit.enabled and taken:
                extra.update(failures=taken, max_failures=self.limit.max_failures)
            await in_thread(write_event, FAILED, name, extra)


async def _buffered(receive: Any) -> tuple[bytes | None, Any]:
    """The request body (None when over MAX_BODY: then unread) and a receive that replays it."""
    messages, size = [], 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if not message.get("more_body") or size > MAX_BODY:
            break
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
    pending = list(messages)

    async def replay() -> dict:
        return pending.pop(0) if pending else await receive()

    return (None if size > MAX_BODY else body), replay


async def _refuse(send: Any, path: str, left: int) -> None:
    text = f"Too many failed logins from this address: try again in {left} s"
    if login_limit.FORM_PATH.search(path):
        body, ctype = text.encode(), b"text/plain; charset=utf-8"
    else:
        body, ctype = json.dumps({"detail": text}).encode(), b"application/json"
    await send({"type": "http.response.start", "status": login_limit.TOO_MANY,
                "headers": [(b"content-type", ctype), (b"retry-after", str(left).encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class ResourceLoginGuardPlugin(AirflowPlugin):
    name = "apache_airflow_resource_login_guard"
    fastapi_root_middlewares = [{"middleware": LoginGuardMiddleware, "args": [], "kwargs": {},
                                 "name": "apache-airflow resource: login limit and failed logins in the event log"}]
