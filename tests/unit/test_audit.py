"""The audit trail (audit/): the rows the CLI writes into Airflow's event log, what is kept while the
database is down, the `audit` command's REST query and its output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_resource.audit import query, trail
from airflow_resource.cli import parser
from airflow_resource.errors import AlreadySo, CommandError

pytestmark = pytest.mark.unit


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    monkeypatch.setattr(trail, "_insert", lambda s, new: rows.extend(new))
    return rows


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch):
    def set_user(uid: int, sudo_user: str | None = None, login: str | None = None) -> None:
        monkeypatch.setattr(trail.os, "getuid", lambda: uid)
        monkeypatch.setattr(trail, "_user_name", lambda u: {0: "root", 1000: "carol"}.get(u, str(u)))
        monkeypatch.setattr(trail, "_login_user", lambda: login)
        if sudo_user is None:
            monkeypatch.delenv("SUDO_USER", raising=False)
        else:
            monkeypatch.setenv("SUDO_USER", sudo_user)
    return set_user


def test_a_row_names_the_os_user_and_the_details(as_user):
    as_user(1000)
    r = trail.row("resource.content.add", {"file": "/x/a.py", "dag_id": "a", "name": None})
    assert (r["event"], r["owner"], r["dag_id"]) == ("resource.content.add", "carol", "a")
    extra = json.loads(r["extra"])
    assert extra["file"] == "/x/a.py" and extra["user"] == "carol" and extra["uid"] == 1000
    assert "name" not in extra and "dag_id" not in extra  # None left out; dag_id is the row's own column
    assert extra["source"] == "resource-apache-airflow" and extra["host"]


def test_sudo_user_counts_only_under_root(as_user):
    as_user(0, sudo_user="alice")
    assert trail.os_user() == {"user": "alice", "uid": 0, "via": "sudo"}
    as_user(1000, sudo_user="alice")  # anyone may set SUDO_USER: a normal user is who they are
    assert trail.os_user()["user"] == "carol"
    as_user(0, login="bob")  # `su -` from bob's session: the kernel's login uid still says bob
    assert trail.os_user() == {"user": "root", "uid": 0, "login_user": "bob"}


@pytest.mark.parametrize("subject", ["user", "uid", "host", "source"])
def test_a_subject_may_not_hide_who_made_the_change(as_user, subject):
    as_user(1000)
    with pytest.raises(ValueError, match="name the subject otherwise"):
        trail.row("resource.users.add", {subject: "alice"})


def test_user_changes_name_the_account_beside_the_os_user(as_user, monkeypatch, make_settings):
    """users add/remove/... record the Airflow account changed as `account`; `user` stays the OS user."""
    from airflow_resource.access import client

    as_user(1000)
    rows = []
    monkeypatch.setattr(trail, "_insert", lambda s, r: rows.extend(r))
    monkeypatch.setattr(client.printer, "ok", lambda *a, **k: None)
    client.done(make_settings(), "users.add", "added", account="alice", roles=["Viewer"])
    extra = json.loads(rows[0]["extra"])
    assert (extra["account"], extra["user"], rows[0]["owner"]) == ("alice", "carol", "carol")


@pytest.mark.parametrize("event", ["", "resource." + "x" * 60])
def test_event_names_fit_the_column(event):
    with pytest.raises(ValueError):
        trail.row(event, {})


def test_record_writes_one_row(make_settings, written, as_user):
    as_user(1000)
    assert trail.record(make_settings(), "resource.manage.scale", workers=2) is True
    assert len(written) == 1 and json.loads(written[0]["extra"])["workers"] == 2


def test_a_record_the_database_refuses_is_kept_and_written_at_the_next_start(make_settings, monkeypatch, capsys):
    s = make_settings()  # a home without run/ yet (restored fresh): made root's alone
    assert trail.record(s, "resource.backup.restore", archive="/b/x.tar.gz") is False  # conftest: no database
    assert s.run_dir.stat().st_mode & 0o777 == 0o700
    assert (s.run_dir / trail.PENDING_FILE).stat().st_mode & 0o777 == 0o600
    kept = (s.run_dir / trail.PENDING_FILE).read_text().splitlines()
    assert len(kept) == 1 and json.loads(kept[0])["when"]  # the time of the action, not of the flush
    assert "until the next start" in capsys.readouterr().out
    assert trail.flush_pending(s) == 0 and (s.run_dir / trail.PENDING_FILE).exists()  # still down: kept
    rows: list[dict] = []
    monkeypatch.setattr(trail, "_insert", lambda _s, new: rows.extend(new))
    assert trail.flush_pending(s) == 1
    assert rows[0]["event"] == "resource.backup.restore" and not (s.run_dir / trail.PENDING_FILE).exists()


def test_a_record_that_cannot_be_kept_either_only_warns(make_settings, capsys, tmp_path):
    s = make_settings(home=str(tmp_path / "no-such-home"))  # nowhere to keep it
    assert trail.record(s, "resource.content.remove", dag_id="a") is False
    assert "could not record resource.content.remove" in capsys.readouterr().err


def test_action_records_the_outcome(make_settings, written):
    s = make_settings()
    with trail.action(s, "resource.content.add", file="a.py") as extra:
        extra["dag_id"] = "a"
    with pytest.raises(AlreadySo):
        with trail.action(s, "resource.content.add", file="a.py"):
            raise AlreadySo("a.py already exists")
    with pytest.raises(RuntimeError):
        with trail.action(s, "resource.manage.scale"):
            raise RuntimeError("supervisord went away")
    extras = [json.loads(r["extra"]) for r in written]
    assert [e["outcome"] for e in extras] == ["ok", "refused", "failed"]
    assert written[0]["dag_id"] == "a" and extras[1]["error"] == "a.py already exists"


# ---------------------------------------------------------------- the audit command


def test_params_map_the_filters_to_the_rest_api():
    p = query.params("2026-11-20", "2026-11-25T08:00", "alice", "etl", "resource.*")
    assert p["order_by"] == "-id" and p["owner"] == "alice" and p["dag_id"] == "etl"
    assert p["event_prefix_pattern"] == "resource." and "event" not in p
    assert (p["after"], p["before"]) == ("2026-11-20T00:00:00+00:00", "2026-11-25T08:00:00+00:00")
    assert query.params("2h", None, None, None, None)["after"].endswith("+00:00")
    assert query.params(None, None, None, None, "resource.content.add") == {"order_by": "-id",
                                                                         "event": "resource.content.add"}


@pytest.mark.parametrize("args, text", [
    (("yesterday", None, None, None, None), "--since 'yesterday'"),
    ((None, "soon", None, None, None), "--until 'soon'"),
    (("1h", "2h", None, None, None), "is not before"),
    ((None, None, None, None, "*"), "matches every event"),
])
def test_bad_filters_are_refused(args, text):
    with pytest.raises(CommandError, match=text):
        query.params(*args)


class FakeAPI:
    def __init__(self, rows: list[dict]) -> None:
        self.rows, self.calls = rows, []

    def get(self, path: str, params: dict) -> dict:
        self.calls.append((path, params))
        page = self.rows[params["offset"]:params["offset"] + params["limit"]]
        return {"event_logs": page, "total_entries": len(self.rows)}


def _rest_row(i: int, extra: Any = None) -> dict:
    return {"event_log_id": i, "when": f"2026-12-03T10:00:{i:02d}Z", "event": "resource.content.add",
            "owner": "alice", "dag_id": "etl", "task_id": None, "run_id": None, "try_number": None, "extra": extra}


def test_fetch_pages_and_returns_the_newest_oldest_first(monkeypatch):
    monkeypatch.setattr(query, "PAGE", 2)
    api = FakeAPI([_rest_row(i) for i in (5, 4, 3, 2, 1)])  # the API answers newest first (-id)
    rows = query.fetch(api, {"order_by": "-id"}, limit=3)
    assert [r["id"] for r in rows] == [3, 4, 5]
    assert [c[1]["limit"] for c in api.calls] == [2, 1]


def test_shape_parses_json_extra_and_keeps_other_text():
    assert query.shape(_rest_row(1, json.dumps({"file": "a.py"})))["extra"] == {"file": "a.py"}
    assert query.shape(_rest_row(1, "{'conf': 1} (not JSON)"))["extra"] == "{'conf': 1} (not JSON)"
    text = query._extra_text({"outcome": "ok", "user": "alice", "dag_ids": ["a"], "uid": 0})
    assert text == 'dag_ids=["a"] outcome=ok'


def test_show_prints_json_for_programs(make_settings, monkeypatch, capsys):
    api = FakeAPI([_rest_row(1, json.dumps({"outcome": "ok"}))])
    monkeypatch.setattr(query.AirflowAPI, "for_stack", classmethod(lambda cls, s: api))
    assert query.show(make_settings(), "json", None, None, "alice", None, None, 50) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["user"] == "alice" and out[0]["extra"] == {"outcome": "ok"}
    assert api.calls[0][1]["owner"] == "alice"
    with pytest.raises(CommandError, match="--limit 0"):
        query.show(make_settings(), "json", None, None, None, None, None, 0)


def test_the_audit_command_takes_its_flags():
    args = parser.build().parse_args(["audit", "--since", "2h", "--user", "alice", "--event", "resource.*",
                                      "--limit", "5", "--json"])
    assert (args.since, args.user, args.event, args.limit) == ("2h", "alice", "resource.*", 5)


def test_a_refused_change_of_users_is_recorded_and_a_refused_read_is_not(make_settings, written, monkeypatch):
    """cli/table.py's audited actions: the CLI records their refusals (names with metacharacters here, refused
    before any request); the change itself is recorded by the code that makes it."""
    from airflow_resource import cli

    s = make_settings()
    monkeypatch.setenv("APACHE_AIRFLOW_HOME", str(s.home))
    assert cli.main(["users", "add", "bob;drop table ab_user", "--password-stdin"]) == 1
    [row] = written
    assert row["event"] == "resource.users.add" and json.loads(row["extra"])["outcome"] == "refused"
    assert cli.main(["teams", "list", "--home", str(s.home)]) != 0  # the stack is not running: refused
    assert len(written) == 1  # a read is not an audited action
