"""alerts: the spool (atomic, once per event), the payload, and delivery with retries against a real local
HTTP server; the heartbeat probe of the housekeeper."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from pathlib import Path

import pytest

from airflow_resource.in_airflow import alerts
from airflow_resource.daemons import alert_delivery
from airflow_resource.stack import probes
from airflow_resource.logs import tasklogs
from airflow_resource.stack.probes import Probe
from tests.unit import aio

pytestmark = pytest.mark.unit

UI = "http://127.0.0.1:48080"
RUN = "manual__2026-11-25T10:00:00+00:00"
TASK = {"event": alerts.TASK_FAILED, "dag_id": "etl", "run_id": RUN, "task_id": "load", "map_index": -1,
        "try_number": 2, "state": "failed", "error": "ValueError: boom"}


class Receiver:
    """Answers POSTs with the given statuses in turn (then 200); records bodies."""

    def __init__(self, statuses: list[int]):
        self.statuses, self.bodies = list(statuses), []
        me = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                me.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(me.statuses.pop(0) if me.statuses else 200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=s3cret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver(request):
    r = Receiver(getattr(request, "param", []))
    yield r
    r.server.shutdown()


def spool_aged(spool: Path, record: dict) -> Path:
    path = alerts.spool(record, str(spool))
    entry = json.loads(path.read_text())
    entry["spooled_at"] -= alert_delivery.SETTLE_S + 1
    path.write_text(json.dumps(entry))
    return path


def test_spool_writes_one_file_per_event_identity(tmp_path):
    first = alerts.spool(TASK, str(tmp_path))
    again = alerts.spool({**TASK, "error": "reported twice (task process and scheduler)"}, str(tmp_path))
    other_try = alerts.spool({**TASK, "try_number": 3}, str(tmp_path))
    assert first == again and first != other_try
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "outbox").iterdir()) == ["task_failed", "task_failed"]
    assert not [p for p in (tmp_path / "outbox").iterdir() if p.name.startswith(".")]  # no temp file left
    assert json.loads(first.read_text())["record"]["error"] == "ValueError: boom"


def test_spool_without_a_configured_spool_does_nothing(monkeypatch):
    monkeypatch.delenv(alerts.SPOOL_ENV, raising=False)
    assert alerts.spool(TASK) is None


def test_deadline_callback_spools_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv(alerts.SPOOL_ENV, str(tmp_path))
    context = {"dag_run": {"dag_id": "etl", "dag_run_id": RUN, "state": "running", "queued_at": "2026-11-25T10:00:00Z"},
               "deadline": {"id": "0193", "deadline_time": "2026-11-25T10:30:00+00:00"}}
    assert aio.run(alerts.deadline_missed(context=context)) == "spooled"
    [path] = (tmp_path / "outbox").iterdir()
    rec = json.loads(path.read_text())["record"]
    assert (rec["event"], rec["dag_id"], rec["run_id"], rec["deadline_time"]) == (
        alerts.DEADLINE_MISSED, "etl", RUN, "2026-11-25T10:30:00+00:00")


def test_ui_links():
    assert alert_delivery.ui_link(UI + "/", TASK) == f"{UI}/dags/etl/runs/manual__2026-11-25T10%3A00%3A00%2B00%3A00/tasks/load?try_number=2"
    assert alert_delivery.ui_link(UI, {**TASK, "map_index": 0}).endswith("/tasks/load/mapped/0?try_number=2")
    assert alert_delivery.ui_link(UI, {"dag_id": "etl", "run_id": "r1"}) == f"{UI}/dags/etl/runs/r1"


def test_payload_carries_the_log_excerpt_rendered(tmp_path):
    log = tmp_path / tasklogs.relative_path("etl", RUN, "load", 2)
    log.parent.mkdir(parents=True)
    lines = [json.dumps({"timestamp": "2026-11-25T10:00:0%dZ" % i, "level": "info", "event": f"line {i}"}) for i in range(5)]
    log.write_text("\n".join(lines) + "\n")
    body = alert_delivery.payload(TASK, UI, tmp_path)
    assert body["log_excerpt"].splitlines() == [f"2026-11-25T10:00:0{i}Z info line {i}" for i in range(5)]
    assert body["log_file"] == str(log)
    assert body["text"] == f"Airflow task failed: etl.load, run {RUN}, try 2: ValueError: boom"
    assert body["resource"] == "apache-airflow" and body["ui_url"].startswith(UI)
    assert alert_delivery.payload({**TASK, "try_number": 9}, UI, tmp_path)["log_excerpt"] == ""  # not on this machine


def test_redact_keeps_no_path_or_query():
    assert alert_delivery.redact("https://hooks.example.com:8443/services/T0/B1/secret?token=x") == "https://hooks.example.com:8443/…"


@pytest.mark.parametrize("receiver", [[500, 503]], indirect=True)
def test_delivery_retries_with_backoff_until_delivered(tmp_path, receiver):
    path = spool_aged(tmp_path, TASK)
    logs: list[str] = []
    now = time.time()
    assert alert_delivery.deliver_due(tmp_path, receiver.url, UI, tmp_path, logs.append, now=now) == 0
    assert json.loads(path.read_text())["next_try"] == pytest.approx(now + alert_delivery.backoff(1))
    assert alert_delivery.deliver_due(tmp_path, receiver.url, UI, tmp_path, logs.append, now=now) == 0  # not due yet
    assert len(receiver.bodies) == 1
    assert alert_delivery.deliver_due(tmp_path, receiver.url, UI, tmp_path, logs.append, now=now + 1.5) == 0
    assert alert_delivery.deliver_due(tmp_path, receiver.url, UI, tmp_path, logs.append, now=now + 10) == 1
    assert len(receiver.bodies) == 3 and receiver.bodies[0] == receiver.bodies[2]
    sent = json.loads((tmp_path / alerts.SENT / path.name).read_text())
    assert sent["attempts"] == 3 and sent["last_result"] == "HTTP 200" and not path.exists()
    assert all("s3cret" not in line for line in logs) and any("HTTP 500" in line for line in logs)


@pytest.mark.parametrize("receiver", [[400]], indirect=True)
def test_a_refused_payload_is_not_retried_and_kept(tmp_path, receiver):
    path = spool_aged(tmp_path, TASK)
    alert_delivery.deliver_due(tmp_path, receiver.url, UI, tmp_path, lambda m: None)
    assert (tmp_path / alerts.FAILED / path.name).exists() and len(receiver.bodies) == 1


def test_an_unreachable_receiver_is_retried_then_given_up(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/"  # nothing listens once closed
    path = spool_aged(tmp_path, TASK)
    alert_delivery.deliver_due(tmp_path, url, UI, tmp_path, lambda m: None)
    assert path.exists() and json.loads(path.read_text())["attempts"] == 1
    alert_delivery.deliver_due(tmp_path, url, UI, tmp_path, lambda m: None, now=time.time() + alert_delivery.GIVE_UP_S + 10)
    assert (tmp_path / alerts.FAILED / path.name).exists()


def test_backoff_grows_and_is_capped():
    assert [alert_delivery.backoff(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert alert_delivery.backoff(30) == alert_delivery.MAX_RETRY_S


def test_a_record_still_settling_waits(tmp_path, receiver):
    alerts.spool(TASK, str(tmp_path))
    assert alert_delivery.deliver_due(tmp_path, receiver.url, UI, tmp_path, lambda m: None) == 0 and receiver.bodies == []


def test_heartbeat_file_probe(tmp_path):
    beat = tmp_path / "housekeeper.heartbeat"
    p = Probe("heartbeat_file", str(beat))
    assert p.check(None) == (False, "no heartbeat yet")
    beat.touch()
    ok, detail = p.check(None, started_at=time.time() - 5)
    assert ok and detail.startswith("heartbeat")
    assert p.check(None, started_at=time.time() + 5)[0] is False  # older than the process
    old = time.time() - probes.HEARTBEAT_FILE_STALE_S - 5
    os.utime(beat, (old, old))
    assert p.check(None)[0] is False


def test_the_listener_plugin_is_installed_exactly_while_a_webhook_is_set(make_settings):
    from airflow_resource.stack import plugins
    from airflow_resource.stack import system

    who = system.current_user()
    on = make_settings(alert_webhook_url="http://127.0.0.1:9/hook")
    on.plugins_dir.mkdir(parents=True)
    plugins.install_all(on, who)
    plugin = on.plugins_dir / plugins.BY_MODULE["alert_plugin"].file
    assert "from airflow_resource.in_airflow.alert_plugin import ResourceAlertsPlugin" in plugin.read_text()
    assert "9/hook" not in plugin.read_text() and on.alerts_dir.is_dir()
    plugins.install_all(make_settings(), who)
    assert not plugin.exists()
