"""Login protection shared by the api-server's middleware (login_guard_plugin.py) and Flower's
(flower_guard.py): which requests are logins, when one failed, and the per-client failure window.

The rule: a client (its IP address) may fail LOGIN_MAX_FAILURES logins within LOGIN_WINDOW_SECONDS
counted from its first failure; after that every login attempt of that client, the right password
too, is answered 429 with Retry-After until the window ends. The window is fixed: attempts while
blocked do not extend it, so the right password works again once it passes.

Each attempt takes a slot before it runs (an atomic INCR) and gives it back when it did not fail, so
parallel attempts cannot slip past the limit between the check and the count. The api-server keeps
the counters in Redis, shared by all its workers; Flower, one process, in its own memory.
Standard library only (redis is imported where the api-server uses it).
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Mapping

MAX_FAILURES_ENV = "APACHE_AIRFLOW_LOGIN_MAX_FAILURES"
WINDOW_ENV = "APACHE_AIRFLOW_LOGIN_WINDOW_SECONDS"
REDIS_URL_ENV = "APACHE_AIRFLOW_LOGIN_LIMIT_REDIS_URL"  # the api-server's only: its own Redis database
KEY_PREFIX = "apache-airflow-resource:login-failures:"
# Flower holds no database credentials: its guard queues its events (JSON) in the same Redis database,
# and the api-server's guard moves them into the event log (login_guard_plugin.py). Bounded: at most
# QUEUE_MAX wait; the oldest go first.
EVENTS_KEY = "apache-airflow-resource:flower-login-events"
QUEUE_MAX = 1000
DEFAULT_MAX_FAILURES, DEFAULT_WINDOW_S = 5, 300
TOO_MANY = 429
FAILED_EVENT, BLOCKED_EVENT = "resource.login.failed", "resource.login.blocked"  # in the event log

# The FastAPI token routes of the FAB auth manager and the UI's login form (FAB's Flask view), under any
# base URL prefix.
LOGIN_PATH = re.compile(r"(?:^|/)auth/(?:token(?:/cli)?|login/?)$")
FORM_PATH = re.compile(r"(?:^|/)auth/login/?$")

# Taking a slot and reading the window's end in one step; a key left without a TTL (it cannot happen
# through this script, but a stray one must not block a client for ever) gets the window again.
TAKE_SLOT_LUA = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""

# Up to ARGV[1] queued events, taken off the queue in the same step (two api-server workers never both
# write one).
POP_EVENTS_LUA = """
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items > 0 then redis.call('LTRIM', KEYS[1], #items, -1) end
return items
"""


@dataclass(frozen=True)
class Limit:
    max_failures: int
    window_s: int

    @property
    def enabled(self) -> bool:
        return self.max_failures > 0 and self.window_s > 0


def from_env(env: Mapping[str, str] | None = None) -> Limit:
    env = os.environ if env is None else env

    def number(name: str, default: int) -> int:
        try:
            return max(0, int(env.get(name, default)))
        except ValueError:
            return default

    return Limit(number(MAX_FAILURES_ENV, DEFAULT_MAX_FAILURES), number(WINDOW_ENV, DEFAULT_WINDOW_S))


def is_login(method: str, path: str) -> bool:
    return method == "POST" and bool(LOGIN_PATH.search(path))


def outcome(path: str, status: int, location: str = "") -> str:
    """'failed', 'ok' or 'other' (not a judgement on the password: a malformed request, a server error).

    The token routes answer 401 to a wrong password and 201 with a token. The UI's form (FAB's
    AuthDBView.login) redirects a wrong password back to the login page and a right one onward; it
    answers 200 (the form again) to a form it could not read."""
    if FORM_PATH.search(path):
        if status in (301, 302, 303, 307):
            return "failed" if FORM_PATH.search(location.split("?", 1)[0]) else "ok"
        return "other"
    if status == 401:
        return "failed"
    return "ok" if status in (200, 201) else "other"


def retry_after(ttl: float) -> int:
    return max(1, int(ttl + 0.999))


def blocked(limit: Limit, taken: int) -> bool:
    return taken > limit.max_failures


def first_block(limit: Limit, taken: int) -> bool:
    """The attempt that found the client blocked first in its window: the one the event log records."""
    return taken == limit.max_failures + 1


class MemoryWindow:
    """The per-client windows in one process's memory (Flower)."""

    def __init__(self, limit: Limit, clock=time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self._slots: dict[str, tuple[int, float]] = {}  # client -> (taken slots, window end)
        self._lock = threading.Lock()

    def take(self, client: str) -> tuple[int, int]:
        """Take a slot for an attempt: (slots taken in this window, seconds until it ends); the attempt
        may go ahead while the first is at most max_failures (blocked())."""
        now = self.clock()
        with self._lock:
            count, end = self._slots.get(client, (0, 0.0))
            if end <= now:
                count, end = 0, now + self.limit.window_s
            count += 1
            self._slots[client] = (count, end)
            if len(self._slots) > 10000:  # forget ended windows now and then: memory stays bounded
                self._slots = {c: v for c, v in self._slots.items() if v[1] > now}
            return count, retry_after(end - now)

    def give_back(self, client: str) -> None:
        with self._lock:
            count, end = self._slots.get(client, (0, 0.0))
            if count > 0:
                self._slots[client] = (count - 1, end)
