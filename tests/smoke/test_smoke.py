"""Smoke: the stack `./cli.sh manage start` started (the default home, or $APACHE_AIRFLOW_HOME) answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import REPO

pytestmark = pytest.mark.smoke


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "airflow_resource", *args], cwd=REPO, env=os.environ,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def creds() -> dict:
    status = _cli("status", "--format", "json")
    if status.returncode == 2:
        pytest.fail("the resource is not running: start it with `./cli.sh manage start`, then run the smoke tests")
    proc = _cli("credentials", "--format", "json", "--show-secrets")
    assert proc.returncode == 0, proc.stderr
    return {c["id"]: c for c in json.loads(proc.stdout)["connections"]}


HEALTHY_WITHIN_S = 120


def test_status_is_healthy(creds):
    # Smoke runs last in `test all`: a fault test just before may have killed a component, which
    # supervisord brings back in seconds (measured: an api-server probe timed out once right after the
    # fault suite). Healthy within the deadline, or fail naming what is not.
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    while True:
        proc = _cli("status", "--format", "json")
        report = json.loads(proc.stdout)
        unhealthy = {c["name"]: c["last_error"] or c["detail"] for c in report["components"] if not c["healthy"]}
        if (proc.returncode == 0 and report["healthy"]) or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert proc.returncode == 0 and report["healthy"], unhealthy


def test_rest_api_answers_with_a_real_token_and_lists_the_example_dags(creds):
    api = creds["api"]
    r = requests.post(api["connection"]["token_url"], json=api["auth"], timeout=30)
    assert r.status_code == 201, r.text
    token = r.json()["access_token"]
    dags = requests.get(f"{api['connection']['api_base']}/dags", headers={"Authorization": f"Bearer {token}"},
                        timeout=30)
    assert dags.status_code == 200
    ids = {d["dag_id"] for d in dags.json()["dags"]}
    assert {"example_etl", "example_ml"} <= ids


def test_ui_serves_the_react_app(creds):
    r = requests.get(creds["api"]["connection"]["url"] + "/", timeout=30)
    assert r.status_code == 200 and "<div id=\"root\"" in r.text.replace("'", '"')


def test_flower_lists_the_workers(creds):
    flower = creds["flower"]
    r = requests.get(f"{flower['connection']['url']}/api/workers", timeout=30,
                     auth=(flower["auth"]["username"], flower["auth"]["password"]))
    assert r.status_code == 200 and any(name.startswith("worker-1@") for name in r.json())
