"""credentials.connections: the connection JSON, passwords masked unless asked."""

from __future__ import annotations

import dataclasses
import json

import pytest

from airflow_resource.stack import credentials
from airflow_resource.config.secrets import Secrets

pytestmark = pytest.mark.unit

EXTERNAL = {"postgres_url": "postgresql://meta:pgS3cretX@db.example:5432/meta",
            "redis_url": "redis://:rdS3cretY@cache.example:6379/0"}


def all_secret_values(sec: Secrets) -> list[str]:
    return [getattr(sec, f.name) for f in dataclasses.fields(sec)]


def by_id(conns):
    return {c["id"]: c for c in conns}


@pytest.mark.parametrize("flags", [{}, EXTERNAL])
def test_ids(make_settings, sec, flags):
    conns = credentials.connections(make_settings(**flags), sec, show=False)
    embedded = [] if flags else ["resource-data"]  # an external server's database is the user's own
    assert [c["id"] for c in conns] == ["api", "postgres", *embedded, "redis", "flower"]


def test_masked_by_default(make_settings, sec):
    conns = by_id(credentials.connections(make_settings(), sec, show=False))
    for cid in ("api", "postgres", "redis", "flower"):
        assert conns[cid]["auth"]["password"] == "********", cid
    text = json.dumps(list(conns.values()))
    for value in all_secret_values(sec):
        assert value not in text


def test_show_gives_the_real_passwords(make_settings, sec):
    conns = by_id(credentials.connections(make_settings(), sec, show=True))
    assert conns["api"]["auth"] == {"username": "admin", "password": sec.admin_password}
    assert conns["postgres"]["auth"] == {"username": "airflow", "password": sec.postgres_password}
    assert conns["redis"]["auth"]["password"] == sec.redis_password
    assert conns["flower"]["auth"] == {"username": "admin", "password": sec.flower_password}


def test_embedded_connection_details(make_settings, sec):
    s = make_settings(api_port=51080, postgres_port=51432, redis_port=51379, flower_port=51555, admin_user="boss")
    conns = by_id(credentials.connections(s, sec, show=False))
    api = conns["api"]["connection"]
    assert api["port"] == 51080 and api["host"] == "127.0.0.1"
    assert api["url"] == "http://127.0.0.1:51080"
    assert api["token_url"] == "http://127.0.0.1:51080/auth/token"
    assert api["api_base"] == "http://127.0.0.1:51080/api/v2"
    assert conns["api"]["auth"]["username"] == "boss"
    assert conns["postgres"]["connection"]["port"] == 51432
    assert conns["postgres"]["connection"]["database"] == "airflow"
    data = conns["resource-data"]
    assert (data["connection"]["database"], data["connection"]["port"]) == ("resource_data", 51432)
    assert data["auth"] == {"username": "resource_data", "password": "********"}
    assert data["metadata"]["airflow_connection_id"] == "resource_postgres"
    assert conns["redis"]["connection"]["port"] == 51379
    assert conns["flower"]["connection"]["url"] == "http://127.0.0.1:51555"
    assert conns["flower"]["auth"]["username"] == "boss"


def test_api_bound_to_all_interfaces_is_reached_on_localhost(make_settings, sec):
    api = by_id(credentials.connections(make_settings(api_host="0.0.0.0"), sec, show=False))["api"]
    assert api["connection"]["host"] == "127.0.0.1"


def test_base_url_is_the_ui_url(make_settings, sec):
    s = make_settings(base_url="https://proxy.example/airflow")
    api = by_id(credentials.connections(s, sec, show=False))["api"]["connection"]
    assert api["url"] == "https://proxy.example/airflow"
    assert api["api_base"] == f"{s.api_url}/airflow/api/v2"  # /auth and /api answer under the sub-path


def test_external_urls_are_masked(make_settings, sec):
    conns = by_id(credentials.connections(make_settings(**EXTERNAL), sec, show=False))
    assert conns["postgres"]["connection"]["url"] == "postgresql://meta:********@db.example:5432/meta"
    assert conns["redis"]["connection"]["url"] == "redis://:********@cache.example:6379/0"
    assert conns["postgres"]["metadata"]["embedded"] is False
    text = json.dumps(list(conns.values()))
    assert "pgS3cretX" not in text and "rdS3cretY" not in text
    for value in all_secret_values(sec):
        assert value not in text


def test_external_urls_shown(make_settings, sec):
    conns = by_id(credentials.connections(make_settings(**EXTERNAL), sec, show=True))
    assert conns["postgres"]["connection"]["url"] == EXTERNAL["postgres_url"]
    assert conns["redis"]["connection"]["url"] == EXTERNAL["redis_url"]


@pytest.mark.parametrize("url, masked", [
    ("postgresql://u:pw@h:5432/db", "postgresql://u:********@h:5432/db"),
    ("redis://:pw@h:6379/0", "redis://:********@h:6379/0"),
    ("postgresql://u:p%40w%2F@h/db?sslmode=require", "postgresql://u:********@h/db?sslmode=require"),
    ("postgresql://u:a:b@h/db", "postgresql://u:********@h/db"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("redis://h:6379/0", "redis://h:6379/0"),
    ("", ""),
])
def test_mask_url(url, masked):
    assert credentials._mask_url(url, show=False) == masked
    assert credentials._mask_url(url, show=True) == url
