"""The REST client: reads survive a slow api-server, writes are never repeated, errors are CommandErrors."""

from __future__ import annotations

import pytest
import requests

from airflow_resource import api as api_mod
from airflow_resource.errors import CommandError

pytestmark = pytest.mark.unit


class _Resp:
    status_code = 200
    content = b"{}"

    def json(self):
        return {"ok": True}


def _client(monkeypatch, outcomes):
    monkeypatch.setattr(api_mod, "RETRY_PAUSE_S", 0)
    c = api_mod.AirflowAPI("http://127.0.0.1:9", "u", "p")
    c._token = "t"
    calls = []

    def request(method, url, **kw):
        calls.append(method)
        out = outcomes.pop(0)
        if isinstance(out, Exception):
            raise out
        return out

    monkeypatch.setattr(c.session, "request", request)
    return c, calls


def test_a_read_is_retried_after_timeouts(monkeypatch):
    c, calls = _client(monkeypatch, [requests.Timeout(), requests.Timeout(), _Resp()])
    assert c.get("/dags") == {"ok": True}
    assert calls == ["GET", "GET", "GET"]


def test_a_read_that_keeps_timing_out_is_a_clear_error(monkeypatch):
    c, _ = _client(monkeypatch, [requests.Timeout()] * api_mod.GET_ATTEMPTS)
    with pytest.raises(CommandError, match="did not answer in time"):
        c.get("/dags")


def test_a_write_is_not_repeated(monkeypatch):
    c, calls = _client(monkeypatch, [requests.Timeout(), _Resp()])
    with pytest.raises(CommandError):
        c.post("/dags/x/dagRuns", {})
    assert calls == ["POST"]
