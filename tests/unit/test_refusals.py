"""Refused credentials and permissions in the event log (in_airflow/refusal_plugin.py): which requests
are recorded, what a row says, and the per-client cap. The integration tests (test_tls.py, test_access.py)
find the rows a real api-server wrote."""

from __future__ import annotations

import base64
import json

import pytest

from tests.unit import aio

pytestmark = pytest.mark.unit


@pytest.fixture
def plugin(monkeypatch):
    pytest.importorskip("airflow.plugins_manager")
    from airflow_resource.in_airflow import refusal_plugin

    rows: list[tuple[str, str, dict]] = []
    monkeypatch.setattr(refusal_plugin, "write_event", lambda *a: rows.append(a))
    monkeypatch.setattr(refusal_plugin, "owner_of", lambda claims, detail: "alice" if detail == "Forbidden" else "")
    return refusal_plugin, rows


def _jwt(claims: dict, header: dict | None = None) -> str:
    def part(d):
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{part(header or {'alg': 'EdDSA', 'kid': 'k1'})}.{part(claims)}.c2ln"


def _call(mw, status, detail="Invalid JWT token", headers=(), path="/api/v2/dags", client="10.0.0.9"):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps({"detail": detail}).encode()})

    sent: list[dict] = []

    async def send(m):
        sent.append(m)

    mw.app = app
    scope = {"type": "http", "method": "GET", "path": path, "client": (client, 1234), "headers": list(headers)}
    aio.run(mw(scope, None, send))
    return sent


def test_where_the_credential_comes_from(plugin):
    mod, _ = plugin
    assert mod.credential({b"authorization": b"Bearer abc.def.ghi"}) == ("bearer", "abc.def.ghi")
    assert mod.credential({b"authorization": b"Basic eDp5"}) == ("basic", "")
    assert mod.credential({b"cookie": b"session=1; _token=t.o.k"}) == ("cookie", "t.o.k")
    assert mod.credential({b"cookie": b"session=1"}) == ("", "")
    assert mod.credential({}) == ("", "")


def test_claims_are_read_not_trusted_and_cleaned(plugin):
    mod, _ = plugin
    token = _jwt({"sub": "7", "aud": "someone-else", "exp": 100, "extra": "x" * 999, "iss": "evil\x1b[2J"})
    assert mod.claims_of(token) == {"sub": "7", "aud": "someone-else", "exp": "100", "iss": "evil?[2J",
                                    "kid": "k1"}
    assert mod.claims_of("not-a-jwt") == {} and mod.claims_of("a.b.c") == {}


def test_a_refused_token_is_one_row_with_the_reason_and_the_claims(plugin):
    mod, rows = plugin
    mw = mod.RefusalRecorder(None)
    token = _jwt({"sub": "1", "aud": "urn:airflow.apache.org:task", "exp": 5})
    sent = _call(mw, 403, headers=[(b"authorization", f"Bearer {token}".encode())])
    assert sent[0]["status"] == 403 and json.loads(sent[1]["body"]) == {"detail": "Invalid JWT token"}  # untouched
    [(event, owner, extra)] = rows
    assert (event, owner) == ("resource.access.refused", "")
    assert extra["status"] == 403 and extra["detail"] == "Invalid JWT token" and extra["credential"] == "bearer"
    assert extra["path"] == "/api/v2/dags" and extra["client"] == "10.0.0.9"
    assert extra["token"]["aud"] == "urn:airflow.apache.org:task"


def test_a_forbidden_permission_names_the_user(plugin):
    mod, rows = plugin
    _call(mod.RefusalRecorder(None), 403, detail="Forbidden", path="/api/v2/dags/access_beta",
          headers=[(b"cookie", f"_token={_jwt({'sub': '3'})}".encode())])
    [(_, owner, extra)] = rows
    assert owner == "alice" and extra["credential"] == "cookie" and extra["detail"] == "Forbidden"


@pytest.mark.parametrize("status,headers,path", [
    (200, [(b"authorization", b"Bearer x")], "/api/v2/dags"),   # allowed
    (404, [(b"authorization", b"Bearer x")], "/api/v2/dags/x"),  # not a refusal
    (401, [], "/api/v2/dags"),                                    # no credential: the UI before its login
    (401, [(b"authorization", b"Bearer x")], "/auth/token"),      # a login: the login guard records it
])
def test_what_is_not_recorded(plugin, status, headers, path):
    mod, rows = plugin
    _call(mod.RefusalRecorder(None), status, headers=headers, path=path)
    assert rows == []


def test_a_client_that_keeps_being_refused_is_capped_and_the_gap_is_said(plugin):
    mod, rows = plugin
    now = [0.0]
    mw = mod.RefusalRecorder(None)
    mw.throttle = mod.Throttle(per_window=3, window_s=60, clock=lambda: now[0])
    bearer = [(b"authorization", b"Bearer x")]
    for _ in range(5):
        _call(mw, 401, detail="Token Expired", headers=bearer)
    _call(mw, 401, detail="Token Expired", headers=bearer, client="10.0.0.10")  # another client: its own cap
    assert len(rows) == 4
    now[0] = 61.0
    _call(mw, 401, detail="Token Expired", headers=bearer)
    assert rows[-1][2]["not_recorded_before"] == 2
    _call(mw, 401, detail="Token Expired", headers=bearer)
    assert "not_recorded_before" not in rows[-1][2]
