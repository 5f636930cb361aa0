"""datastores: the rendered postgresql and redis config files."""

from __future__ import annotations

import pytest

from airflow_resource.stack import datastores

pytestmark = pytest.mark.unit


def conf_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


def test_postgres_conf(make_settings):
    s = make_settings(postgres_port=51432)
    text = datastores.render_postgres_conf(s)
    lines = conf_lines(text)
    assert "port = 51432" in lines
    assert "listen_addresses = '127.0.0.1'" in lines
    assert f"unix_socket_directories = '{s.postgres_dir}'" in lines  # the data user's: run/ is root's
    assert "password_encryption = 'scram-sha-256'" in lines
    assert f"max_connections = {datastores.PG_MAX_CONNECTIONS}" in lines
    assert "synchronous_commit = on" in lines
    assert "fsync = off" not in text
    assert text.endswith("\n")
    # every setting line is "key = value", each key once
    keys = [ln.split("=", 1)[0].strip() for ln in lines]
    assert all(" = " in ln for ln in lines)
    assert len(keys) == len(set(keys))


def test_redis_conf(make_settings, sec):
    s = make_settings(redis_port=51379)
    lines = conf_lines(datastores.render_redis_conf(s, sec))
    assert "port 51379" in lines
    assert "bind 127.0.0.1" in lines
    assert "protected-mode yes" in lines
    assert f"dir {s.redis_dir}" in lines
    assert f"requirepass {sec.redis_password}" in lines
    assert "appendonly yes" in lines
    assert "maxmemory-policy noeviction" in lines
    assert "daemonize no" in lines
    keys = [ln.split(" ", 1)[0] for ln in lines]
    assert len(keys) == len(set(keys))


def test_superuser_dsn(make_settings, sec):
    dsn = datastores.superuser_dsn(make_settings(postgres_port=51432), sec, database="airflow")
    parts = dict(item.split("=", 1) for item in dsn.split())
    assert parts == {"host": "127.0.0.1", "port": "51432", "dbname": "airflow", "user": "postgres",
                     "password": sec.postgres_superuser_password, "connect_timeout": "2"}


def test_is_initialised(make_settings):
    s = make_settings()
    assert not datastores.is_initialised(s)
    s.postgres_dir.mkdir()
    (s.postgres_dir / "PG_VERSION").write_text("15\n")
    assert datastores.is_initialised(s)


def test_check_data_version(make_settings, tmp_path):
    from airflow_resource.errors import CommandError

    s = make_settings()
    s.postgres_dir.mkdir()
    (s.postgres_dir / "PG_VERSION").write_text("15\n")
    datastores.check_data_version(s, tmp_path / "postgresql" / "15" / "bin")  # same major: fine
    datastores.check_data_version(s, tmp_path / "usr" / "bin")                  # unknown version: fine
    with pytest.raises(CommandError) as exc:
        datastores.check_data_version(s, tmp_path / "postgresql" / "16" / "bin")
    assert "PostgreSQL 15" in exc.value.message and "PostgreSQL 16" in exc.value.message
