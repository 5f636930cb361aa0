"""APACHE_AIRFLOW_POSTGRES_URL / _REDIS_URL: a second stack on servers that already run starts neither."""

from __future__ import annotations

import json
from urllib.parse import quote

import psycopg2
import pytest

from tests.conftest import processes_of, start_stack, stop_and_remove
from tests.integration.test_stack import _run_dag

pytestmark = [pytest.mark.integration, pytest.mark.long]  # a second stack: `./cli.sh test long`

EXT_DB = "external_stack"


@pytest.fixture(scope="module")
def external_stack(running_stack):
    """Stack B on stack A's PostgreSQL (its own database) and Redis (database 1)."""
    secrets = dict(line.split("=", 1) for line in (running_stack.home / "secrets.env").read_text().splitlines()
                   if "=" in line and not line.startswith("#"))
    su_pw = secrets["APACHE_AIRFLOW_POSTGRES_SUPERUSER_PASSWORD"]
    pg_port = running_stack.env["APACHE_AIRFLOW_POSTGRES_PORT"]
    conn = psycopg2.connect(host="127.0.0.1", port=pg_port, dbname="postgres", user="postgres", password=su_pw)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {EXT_DB}")
        cur.execute(f"CREATE DATABASE {EXT_DB}")
    redis_pw = secrets["APACHE_AIRFLOW_REDIS_PASSWORD"]
    redis_port = running_stack.env["APACHE_AIRFLOW_REDIS_PORT"]
    stack = start_stack("af-ext-", extra_env={
        "APACHE_AIRFLOW_POSTGRES_URL": f"postgresql://postgres:{quote(su_pw, safe='')}@127.0.0.1:{pg_port}/{EXT_DB}",
        "APACHE_AIRFLOW_REDIS_URL": f"redis://:{quote(redis_pw, safe='')}@127.0.0.1:{redis_port}/1",
    })
    yield stack
    stop_and_remove(stack)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {EXT_DB} WITH (FORCE)")
    conn.close()


def test_external_stack_runs_no_database_or_broker_of_its_own(external_stack):
    proc = external_stack.cli("status", "--format", "json", timeout=30)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["healthy"], report
    names = [c["name"] for c in report["components"]]
    assert "postgres" not in names and "redis" not in names
    assert not (external_stack.home / "postgres").exists()
    creds = json.loads(external_stack.cli("credentials", "--format", "json", timeout=30).stdout)
    pg = next(c for c in creds["connections"] if c["id"] == "postgres")
    assert pg["metadata"]["embedded"] is False and "********" in pg["connection"]["url"]


def test_external_stack_runs_a_dag_on_the_shared_servers(external_stack, running_stack):
    _run_id, run = _run_dag(external_stack, "example_etl")
    assert run["state"] == "success"
    assert running_stack.status()["healthy"]  # stack A is unaffected


def test_stopping_the_external_stack_leaves_the_servers_running(external_stack, running_stack):
    proc = external_stack.cli("manage", "stop", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert processes_of(external_stack.home) == []
    assert running_stack.status()["healthy"]
