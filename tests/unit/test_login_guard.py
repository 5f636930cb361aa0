"""Login protection (in_airflow/login_limit.py, login_guard_plugin.py, flower_guard.py): which requests
are logins, what counts as a failure, the per-client window, and the api-server's middleware end to end
against a fake app (the real routes, Redis and Flower: tests/integration/test_audit.py)."""

from __future__ import annotations

import base64
import json

import pytest

from airflow_resource.in_airflow import login_limit
from airflow_resource.stack import components
from tests.unit import aio

pytestmark = pytest.mark.unit


def test_limit_from_env_with_defaults_and_bad_values():
    assert login_limit.from_env({}) == login_limit.Limit(5, 300)
    limit = login_limit.from_env({login_limit.MAX_FAILURES_ENV: "3", login_limit.WINDOW_ENV: "x"})
    assert limit == login_limit.Limit(3, 300) and limit.enabled
    assert not login_limit.from_env({login_limit.MAX_FAILURES_ENV: "0"}).enabled


@pytest.mark.parametrize("method, path, expected", [
    ("POST", "/auth/token", True), ("POST", "/auth/token/cli", True), ("POST", "/auth/login/", True),
    ("POST", "/airflow/auth/token", True),  # under a base URL
    ("GET", "/auth/token", False), ("POST", "/api/v2/dags", False), ("POST", "/auth/tokens", False),
    ("GET", "/auth/login/", False),  # the form itself
])
def test_which_requests_are_logins(method, path, expected):
    assert login_limit.is_login(method, path) is expected


@pytest.mark.parametrize("path, status, location, expected", [
    ("/auth/token", 401, "", "failed"), ("/auth/token", 201, "", "ok"), ("/auth/token", 400, "", "other"),
    ("/auth/token", 500, "", "other"),
    ("/auth/login/", 302, "/auth/login/?next=http://x/", "failed"),  # FAB: back to the form
    ("/auth/login/", 302, "http://127.0.0.1:8080/", "ok"),
    ("/auth/login/", 200, "", "other"),  # the form again: it could not be read (CSRF)
])
def test_what_counts_as_a_failed_login(path, status, location, expected):
    assert login_limit.outcome(path, status, location) == expected


def test_memory_window_blocks_after_the_failures_until_it_ends():
    now = [1000.0]
    w = login_limit.MemoryWindow(login_limit.Limit(2, 60), clock=lambda: now[0])
    assert w.take("a")[0] == 1 and w.take("a")[0] == 2  # two failures (slots kept)
    taken, left = w.take("a")
    assert login_limit.blocked(w.limit, taken) and login_limit.first_block(w.limit, taken) and left == 60
    assert not login_limit.blocked(w.limit, w.take("b")[0])  # another client is not affected
    now[0] += 30
    taken, left = w.take("a")
    assert login_limit.blocked(w.limit, taken) and not login_limit.first_block(w.limit, taken) and left == 30
    now[0] += 31  # the window passed: blocked attempts did not extend it
    assert w.take("a") == (1, 60)


def test_memory_window_gives_back_the_slot_of_an_attempt_that_did_not_fail():
    w = login_limit.MemoryWindow(login_limit.Limit(1, 60))
    for _ in range(5):
        assert not login_limit.blocked(w.limit, w.take("a")[0])
        w.give_back("a")


def test_api_server_and_flower_get_the_limit(make_settings, sec):
    s = make_settings(login_max_failures=3, login_window_seconds=7)
    by = {c.name: c for c in components.build(s, sec)}
    for name in ("api-server", "flower"):
        assert by[name].env[login_limit.MAX_FAILURES_ENV] == "3" and by[name].env[login_limit.WINDOW_ENV] == "7"
    url = by["api-server"].env[login_limit.REDIS_URL_ENV]
    assert url.endswith(f":{s.redis_port}/{components.LOGIN_LIMIT_DB}") and sec.redis_password in url
    # Flower counts in its own memory; the same database is only where it queues its login events.
    assert by["flower"].env[login_limit.REDIS_URL_ENV] == url
    assert by["flower"].argv[-2:] == ("--flower-conf", str(components.FLOWER_CONF))
    assert components.FLOWER_CONF.is_file()


# ---------------------------------------------------------------- the api-server's middleware


@pytest.fixture
def guard(monkeypatch):
    pytest.importorskip("airflow.plugins_manager")
    from airflow_resource.in_airflow import login_guard_plugin

    monkeypatch.setenv(login_limit.MAX_FAILURES_ENV, "2")
    monkeypatch.setenv(login_limit.WINDOW_ENV, "60")
    monkeypatch.delenv(login_limit.REDIS_URL_ENV, raising=False)
    events: list[tuple[str, str, dict]] = []
    monkeypatch.setattr(login_guard_plugin, "write_event", lambda *a: events.append(a))
    seen_bodies: list[bytes] = []

    async def app(scope, receive, send):  # the token route: 201 for the right password, 401 otherwise
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        seen_bodies.append(body)
        ok = json.loads(body or b"{}").get("password") == "right"
        await send({"type": "http.response.start", "status": 201 if ok else 401, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    mw = login_guard_plugin.LoginGuardMiddleware(app)
    return login_guard_plugin, mw, events, seen_bodies


def _call(mw, path="/auth/token", password="wrong", client="10.0.0.7", method="POST", chunks=1):
    body = json.dumps({"username": "mallory\x07", "password": password}).encode()
    parts = [body] if chunks == 1 else [body[:5], body[5:]]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(m):
        sent.append(m)

    scope = {"type": "http", "method": method, "path": path, "client": (client, 5555),
             "headers": [(b"content-type", b"application/json")]}
    aio.run(mw(scope, receive, send))
    start = sent[0]
    return start["status"], dict(start.get("headers", []))


def test_middleware_refuses_a_client_past_its_failures_and_records_them(guard):
    plugin, mw, events, bodies = guard
    assert [_call(mw)[0] for _ in range(2)] == [401, 401]
    status, headers = _call(mw, password="right")  # blocked: the right password too
    assert status == 429 and headers[b"retry-after"] == b"60"
    assert _call(mw)[0] == 429 and _call(mw, client="10.0.0.8", password="right")[0] == 201
    assert [e[0] for e in events] == [plugin.FAILED, plugin.FAILED, plugin.BLOCKED]  # one BLOCKED per window
    assert events[0][1] == "mallory?" and events[0][2]["client"] == "10.0.0.7" and events[0][2]["failures"] == 1
    assert events[0][2]["route"] == "token" and events[2][2]["retry_after"] == 60
    assert len(bodies) == 3  # refused attempts never reached the password check


def test_middleware_passes_the_body_through_and_lets_good_logins_go(guard):
    _plugin, mw, events, bodies = guard
    for _ in range(5):  # successes give their slot back: never blocked
        assert _call(mw, password="right", chunks=2)[0] == 201
    assert json.loads(bodies[-1])["password"] == "right" and events == []


def test_middleware_leaves_other_requests_alone(guard):
    _plugin, mw, events, bodies = guard
    for _ in range(4):
        assert _call(mw, path="/api/v2/dags")[0] == 401
    assert events == [] and len(bodies) == 4


def test_username_of_json_and_form_bodies():
    pytest.importorskip("airflow.plugins_manager")
    from airflow_resource.in_airflow.login_guard_plugin import username_of

    assert username_of(b'{"username": "alice"}', "application/json") == "alice"
    assert username_of(b"username=bob&password=x&csrf_token=y", "application/x-www-form-urlencoded") == "bob"
    assert username_of(b"[1]", "application/json") == "" and username_of(b"{", "application/json") == ""
    assert len(username_of(json.dumps({"username": "x" * 999}).encode(), "application/json")) == 100


def test_flower_guard_does_nothing_without_a_limit(monkeypatch):
    pytest.importorskip("flower.views")
    from airflow_resource.in_airflow import flower_guard

    monkeypatch.setenv(login_limit.MAX_FAILURES_ENV, "0")
    assert flower_guard.install() is False


def test_flower_names_the_user_of_its_basic_auth_never_the_password():
    from airflow_resource.in_airflow.flower_guard import username_of

    assert username_of("Basic " + base64.b64encode(b"mallory:secret:with:colons").decode()) == "mallory"
    assert username_of("Basic " + base64.b64encode(b"ev\x1bil:pw").decode()) == "ev?il"
    assert username_of("Basic !!!") == "" and username_of("Bearer x.y.z") == "" and username_of("") == ""


class FakeRedis:
    """The list commands the queue and its reader use, in memory."""

    def __init__(self):
        self.items: list[bytes] = []

    def pipeline(self):
        return self

    def rpush(self, key, item):
        assert key == login_limit.EVENTS_KEY
        self.items.append(item.encode() if isinstance(item, str) else item)

    def ltrim(self, key, start, end):
        self.items = self.items[start:] if end == -1 else self.items[start:end + 1]

    def execute(self):
        return []


def test_flower_queues_its_events_bounded_and_the_api_server_writes_them_with_their_time(monkeypatch):
    pytest.importorskip("airflow.plugins_manager")
    from airflow_resource.in_airflow import flower_guard, login_guard_plugin

    queue = flower_guard.EventQueue("redis://unused")
    queue._redis = FakeRedis()
    for i in range(login_limit.QUEUE_MAX + 5):
        queue.put(login_limit.FAILED_EVENT, f"user{i}", {"client": "10.0.0.8"})
    items = queue._redis.items
    assert len(items) == login_limit.QUEUE_MAX and json.loads(items[0])["owner"] == "user5"  # the oldest went
    written: list[tuple] = []
    monkeypatch.setattr(login_guard_plugin, "write_event", lambda *a: written.append(a))
    odd = [b"{not json", json.dumps({"event": "something.else", "owner": "x", "extra": {},
                                     "dttm": "2026-12-03T10:00:00+00:00"}).encode()]
    assert login_guard_plugin.write_queued(items[:2] + odd) == 2
    (event, owner, extra, when), _ = written
    assert (event, owner, extra["route"], extra["client"]) == (login_limit.FAILED_EVENT, "user5", "flower", "10.0.0.8")
    assert when.tzinfo is not None and "password" not in json.dumps(extra)


def test_flower_queue_without_redis_drops_quietly():
    from airflow_resource.in_airflow import flower_guard

    flower_guard.EventQueue("").put(login_limit.FAILED_EVENT, "x", {})  # no URL: nothing to do
    broken = flower_guard.EventQueue("redis://127.0.0.1:1/2")  # nothing listens: logged, not raised
    broken.put(login_limit.FAILED_EVENT, "x", {})
