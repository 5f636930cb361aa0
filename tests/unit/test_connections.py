"""connections: ids, URIs, bodies and files checked before anything is written; passwords never from argv;
imports all-or-nothing (the REST API faked here; tests/integration/test_rotation.py uses the real one)."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from airflow_resource.api import APIError
from airflow_resource.cli import parser, secrets_cmds
from airflow_resource.errors import CommandError
from airflow_resource.stack import connections

pytestmark = pytest.mark.unit

TYPES = {"http", "postgres", "generic"}


@pytest.mark.parametrize("bad", ["x;rm -rf /", "a b", "x' OR '1'='1", "$(id)", "`id`", "-flag", ".hidden", "",
                                 "a/b", "a\nb", "é", "x" * 201, "a|b", "a&&b"])
def test_ids_with_metacharacters_are_refused(bad):
    with pytest.raises(CommandError, match="not allowed"):
        connections.check_id(bad)


@pytest.mark.parametrize("good", ["my_db", "api.prod-2", "A1", "x" * 200])
def test_plain_ids_pass(good):
    assert connections.check_id(good) == good


def test_uri_parsed_like_airflow():
    got = connections.from_uri("postgresql://etl%40corp@db.example:5433/sales?sslmode=require")
    assert got == {"conn_type": "postgres", "host": "db.example", "login": "etl@corp", "schema": "sales",
                   "port": 5433, "extra": json.dumps({"sslmode": "require"})}
    assert connections.from_uri("google-cloud-platform://")["conn_type"] == "google_cloud_platform"


def test_a_uri_with_a_password_is_refused_without_echoing_it():
    with pytest.raises(CommandError, match="holds a password") as err:
        connections.from_uri("postgres://u:hunter2@h/db")
    assert "hunter2" not in err.value.message + (err.value.hint or "")


@pytest.mark.parametrize("item, says", [
    ({"connection_id": "a", "conn_type": "nosuch"}, "unknown type"),
    ({"connection_id": "a", "conn_type": "Bad Type;"}, "not a connection type"),
    ({"connection_id": "a", "conn_type": "http", "port": "eighty"}, "not a number"),
    ({"connection_id": "a", "conn_type": "http", "port": 70000}, "out of range"),
    ({"connection_id": "a", "conn_type": "http", "extra": "[1]"}, "JSON object"),
    ({"connection_id": "a", "conn_type": "http", "colour": "red"}, "unknown connection field"),
    ({"connection_id": "a", "conn_type": "http", "password": 5}, "must be text"),
])
def test_bad_bodies(item, says):
    with pytest.raises(CommandError, match=says):
        connections.normalise(item, TYPES)


def test_body_reduced_to_what_is_set():
    body = connections.normalise({"conn_id": "a", "conn_type": "http", "port": "443", "extra": {"k": 1},
                                  "host": None}, TYPES)
    assert body == {"connection_id": "a", "conn_type": "http", "port": 443, "extra": '{"k": 1}'}


def test_shown_masks_unless_asked():
    conn = {"connection_id": "a", "conn_type": "http", "password": "***"}
    assert connections.shown(conn)["password"] == connections.MASK
    assert connections.shown({**conn, "password": "real"}, show_secrets=True)["password"] == "real"
    assert connections.shown({**conn, "password": None})["password"] is None


def test_import_formats():
    ours = connections.parse_import(json.dumps({"connections": [{"connection_id": "a", "conn_type": "http"}]}))
    airflows = connections.parse_import(json.dumps({"a": {"conn_type": "http"}}))
    assert ours == [{"connection_id": "a", "conn_type": "http"}] and airflows == ours
    for bad in ("[1, 2]", "not json", '{"connections": [1]}'):
        with pytest.raises(CommandError):
            connections.parse_import(bad)


class FakeAPI:
    """/api/v2/connections in memory; posting `fail_on` answers 500."""

    def __init__(self, present=(), fail_on=None):
        self.conns = {c: {"connection_id": c, "conn_type": "http"} for c in present}
        self.fail_on = fail_on
        self.base, self.timeout = "http://x", 1

    def get(self, path, **kw):
        conn_id = path.rsplit("/", 1)[1]
        if conn_id not in self.conns:
            raise APIError(404, "not found")
        return self.conns[conn_id]

    def paged(self, path, key, params=None):
        return list(self.conns.values())

    def post(self, path, body):
        if body["connection_id"] == self.fail_on:
            raise APIError(500, "boom")
        self.conns[body["connection_id"]] = body

    def delete(self, path):
        conn_id = path.rsplit("/", 1)[1]
        if conn_id not in self.conns:
            raise APIError(404, "not found")
        del self.conns[conn_id]


@pytest.fixture
def fake(monkeypatch):
    def install(api):
        monkeypatch.setattr(connections, "running_api", lambda s: api)
        monkeypatch.setattr(connections, "conn_types", lambda api: TYPES)
        return api
    return install


def _file(tmp_path, items):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"connections": items}))
    return f


def test_import_all_or_nothing(fake, tmp_path, make_settings):
    s = make_settings()
    api = fake(FakeAPI(present=["old"]))
    items = [{"connection_id": "a", "conn_type": "http"}, {"connection_id": "old", "conn_type": "http"}]
    with pytest.raises(CommandError, match="already exist"):
        connections.import_file(s, _file(tmp_path, items))
    assert set(api.conns) == {"old"}
    with pytest.raises(CommandError, match="twice"):
        connections.import_file(s, _file(tmp_path, [items[0], items[0]]))
    with pytest.raises(CommandError, match="unknown type"):
        connections.import_file(s, _file(tmp_path, [items[0], {"connection_id": "b", "conn_type": "zz"}]))
    with pytest.raises(CommandError, match="resource's own"):
        connections.import_file(s, _file(tmp_path, [{"connection_id": "resource_postgres", "conn_type": "postgres"}]))
    assert set(api.conns) == {"old"}


def test_an_import_failing_part_way_removes_what_it_added(fake, tmp_path, make_settings):
    api = fake(FakeAPI(fail_on="c"))
    items = [{"connection_id": n, "conn_type": "http"} for n in "abc"]
    with pytest.raises(CommandError):
        connections.import_file(make_settings(), _file(tmp_path, items))
    assert api.conns == {}
    api.fail_on = None
    assert connections.import_file(make_settings(), _file(tmp_path, items)) == ["a", "b", "c"]


def test_add_refuses_a_duplicate_and_the_managed_connection(fake, make_settings):
    api = fake(FakeAPI(present=["dup"]))
    with pytest.raises(CommandError, match="already exists"):
        connections.add(make_settings(), {"connection_id": "dup", "conn_type": "http"})
    with pytest.raises(CommandError, match="resource's own"):
        connections.add(make_settings(), {"connection_id": "resource_postgres", "conn_type": "postgres"})
    added = connections.add(make_settings(), {"connection_id": "n", "conn_type": "http", "password": "pw"})
    assert added["password"] == connections.MASK and api.conns["n"]["password"] == "pw"


def test_remove(fake, make_settings):
    api = fake(FakeAPI(present=["a"]))
    with pytest.raises(CommandError, match="resource's own"):
        connections.remove(make_settings(), "resource_postgres")
    with pytest.raises(CommandError) as missing:
        connections.remove(make_settings(), "zz")
    assert missing.value.exit_code == 2
    connections.remove(make_settings(), "a")
    assert api.conns == {}


def test_export_refuses_to_overwrite(fake, tmp_path, make_settings):
    fake(FakeAPI())
    f = tmp_path / "out.json"
    f.write_text("keep")
    with pytest.raises(CommandError, match="exists"):
        connections.export(make_settings(), f, force=False)
    assert f.read_text() == "keep"


# ---------------------------------------------------------------- the password never from argv


def _ns(**kw):
    return argparse.Namespace(**{"password_prompt": False, "password_file": None, **kw})


def test_password_from_a_file_or_stdin(tmp_path, monkeypatch):
    f = tmp_path / "pw"
    f.write_text("first-line\nignored\n")
    assert secrets_cmds.read_password(_ns(password_file=str(f))) == "first-line"
    monkeypatch.setattr("sys.stdin", io.StringIO("from-stdin\n"))
    assert secrets_cmds.read_password(_ns(password_file="-")) == "from-stdin"
    assert secrets_cmds.read_password(_ns()) is None
    f.write_text("")
    with pytest.raises(CommandError, match="empty"):
        secrets_cmds.read_password(_ns(password_file=str(f)))


def test_no_password_flag_takes_a_value_on_the_command_line():
    args = parser.PARSER.parse_args(["connections", "add", "x", "--type", "http", "--password-file", "-"])
    assert args.password_file == "-"
    with pytest.raises(SystemExit):
        parser.PARSER.parse_args(["connections", "add", "x", "--password", "pw"])


def test_credentials_shows_by_default_and_rotate_takes_names():
    assert parser.PARSER.parse_args(["credentials", "--json"]).action == "show"
    args = parser.PARSER.parse_args(["credentials", "rotate", "redis", "fernet", "--json"])
    assert (args.action, args.names, args.format) == ("rotate", ["redis", "fernet"], "json")
