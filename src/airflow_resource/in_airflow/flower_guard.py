"""Login protection for Flower's basic auth: after LOGIN_MAX_FAILURES wrong passwords within
LOGIN_WINDOW_SECONDS a client gets 429 with Retry-After until the window ends (login_limit.py).

Flower has no rate limit and no plugin hook, but it reads a Python configuration file at start
(`airflow celery flower --flower-conf FILE`, which Flower executes with tornado.options): the
resource's file (flower_conf.py beside this module) calls install(), which wraps Flower's
BaseHandler.get_current_user, where Flower checks the Authorization header of every request. No
file of Flower is changed. Flower is one process, so the counters live in its memory. Only a request
that carried credentials counts: a browser's first request has none and gets 401 to make it ask.

Failed logins and the first refusal of a window are queued in Redis (login_limit.EVENTS_KEY, the
api-server's login database, login_limit.REDIS_URL_ENV) as `resource.login.failed` /
`resource.login.blocked` with route `flower`: Flower holds no database credentials, so the
api-server's guard writes them into the event log. The name tried is queued, never the password.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os

from airflow_resource.in_airflow import login_limit
from airflow_resource.in_airflow.event_log import clean

log = logging.getLogger(__name__)
_INSTALLED = "_apache_airflow_resource_guarded"


def username_of(authorization: str) -> str:
    """The user name of a basic-auth header, cleaned and cut; "" when it is not one."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        name = base64.b64decode(value.strip(), validate=True).decode("utf-8", "replace").partition(":")[0]
    except ValueError:
        return ""
    return clean(name)


class EventQueue:
    """Flower's events on their way to the event log; a Redis error is logged and the event dropped
    (the login is refused or let through as it would be anyway)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._redis = None

    def put(self, event: str, owner: str, extra: dict) -> None:
        if not self.url:
            return
        item = json.dumps({"event": event, "owner": owner, "extra": {**extra, "route": "flower"},
                           "dttm": datetime.datetime.now(datetime.timezone.utc).isoformat()})
        try:
            if self._redis is None:
                import redis

                self._redis = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
            pipe = self._redis.pipeline()
            pipe.rpush(login_limit.EVENTS_KEY, item)
            pipe.ltrim(login_limit.EVENTS_KEY, -login_limit.QUEUE_MAX, -1)
            pipe.execute()
        except Exception:  # noqa: BLE001 - see the class docstring
            log.warning("apache-airflow resource: could not queue %s for the event log", event, exc_info=True)


def install() -> bool:
    """Wrap Flower's check of the credentials once; False when there is nothing to do."""
    import tornado.web
    from flower.views import BaseHandler

    limit = login_limit.from_env()
    if not limit.enabled or getattr(BaseHandler.get_current_user, _INSTALLED, False):
        return False
    window = login_limit.MemoryWindow(limit)
    events = EventQueue(os.environ.get(login_limit.REDIS_URL_ENV, ""))
    checked = BaseHandler.get_current_user

    def get_current_user(self):  # noqa: ANN001, ANN202 - Flower's signature
        if not self.request.headers.get("Authorization"):
            return checked(self)  # no credentials: Flower's own 401 asks for them, nothing counted
        client = self.request.remote_ip or "unknown"
        taken, left = window.take(client)
        if login_limit.blocked(limit, taken):
            if login_limit.first_block(limit, taken):
                log.warning("apache-airflow resource: %s refused for %d s after %d failed logins",
                            client, left, limit.max_failures)
                events.put(login_limit.BLOCKED_EVENT, "", {
                    "client": client, "max_failures": limit.max_failures, "window_seconds": limit.window_s,
                    "retry_after": left})
            self.set_status(login_limit.TOO_MANY)
            self.set_header("Retry-After", str(left))
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            raise tornado.web.Finish(f"Too many failed logins from this address: try again in {left} s\n")
        try:
            user = checked(self)
        except tornado.web.HTTPError as exc:
            if exc.status_code != 401:
                window.give_back(client)
            else:
                log.warning("apache-airflow resource: failed Flower login from %s", client)
                events.put(login_limit.FAILED_EVENT, username_of(self.request.headers.get("Authorization", "")), {
                    "client": client, "reason": "invalid credentials", "failures": taken,
                    "max_failures": limit.max_failures})
            raise
        window.give_back(client)
        return user

    setattr(get_current_user, _INSTALLED, True)
    BaseHandler.get_current_user = get_current_user
    return True
