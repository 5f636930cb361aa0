"""A hostile DAG on the real stack (issue 13): its tasks try to cross the trust boundary and report what
they reached (tests/fixtures/hostile/hostile_dag.py). Every attempt must fail; and the very same probe
code, run here as root (or with the secret handed to it), must succeed, or the failures prove nothing.

Written for the whole design: the Airflow layer (each component holds only the secrets it needs,
asymmetric JWT, resource_data's own role) and the OS layer (root-owned run/, plugins/, dags/ and env
files; components that dropped privileges are non-dumpable, so their /proc/<pid>/environ and memfds
are closed to tasks). Known, documented holders: a Celery worker (and so its tasks) holds the broker's
Redis password; Airflow lets any task read any DAG's XComs and Variables through the Execution API.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import start_stack, stop_and_remove
from tests.integration.test_stack import DAG_RUN_TIMEOUT_S, _run_dag

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hostile"
REPO_DAGS = Path(__file__).resolve().parents[2] / "dags"
# What a task may hold by design: Celery workers need the broker, and tasks are their forks.
TASK_MAY_HOLD = {"redis_password"}


def _probes():
    spec = importlib.util.spec_from_file_location("hostile_probes", FIXTURES / "hostile_dag.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _secrets(home: Path) -> dict[str, str]:
    out = {}
    for line in (home / "secrets.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, _, v = line.partition("=")
            if v.strip():
                out[k.removeprefix("APACHE_AIRFLOW_").lower()] = v.strip()
    return out


@pytest.fixture(scope="module")
def stack():
    st = start_stack("af-hostile-")
    yield st
    stop_and_remove(st)


@pytest.fixture(scope="module")
def conf(stack):
    secrets = _secrets(stack.home)
    assert {"jwt_private_key", "data_db_password", "housekeeper_password"} <= set(secrets)
    for name in ("hostile_victim.py", "hostile_dag.py"):
        proc = stack.cli("content", "add", "--file", str(FIXTURES / name), "--force", timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    r = stack.rest("POST", "/variables", json={"key": "hostile_target_var", "value": "another-dags-variable"})
    assert r.status_code in (201, 409), r.text
    victim_run, run = _run_dag(stack, "hostile_victim")
    assert run["state"] == "success"
    return {
        "needles": {k: hashlib.sha256(v.encode()).hexdigest() for k, v in secrets.items()},
        "home": str(stack.home), "pg_port": int(stack.env["APACHE_AIRFLOW_POSTGRES_PORT"]),
        "api_url": stack.api, "victim_run_id": victim_run,
    }


@pytest.fixture(scope="module")
def reports(stack, conf):
    """The hostile run's task reports (their XComs), read as the admin."""
    stack.wait_for(lambda: stack.rest("GET", "/dags/hostile_dag").status_code == 200, 120, "hostile_dag parsed")
    assert stack.rest("PATCH", "/dags/hostile_dag", json={"is_paused": False}).status_code == 200
    r = stack.rest("POST", "/dags/hostile_dag/dagRuns", json={"logical_date": None, "conf": conf})
    assert r.status_code == 200, r.text
    run_id = r.json()["dag_run_id"]

    def finished():
        run = stack.rest("GET", f"/dags/hostile_dag/dagRuns/{run_id}").json()
        return run if run["state"] in ("success", "failed") else None

    run = stack.wait_for(finished, DAG_RUN_TIMEOUT_S * 2, "the hostile run")
    out = {"_state": run["state"]}
    for task in ("cross_the_boundary", "data_connection_on_the_metadata_db", "other_dags_data"):
        x = stack.rest("GET", f"/dags/hostile_dag/dagRuns/{run_id}/taskInstances/{task}/xcomEntries/return_value",
                       params={"deserialize": "true", "stringify": "false"})
        assert x.status_code == 200, f"{task}: {x.text}"
        value = x.json()["value"]
        out[task] = json.loads(value) if isinstance(value, str) else value
    print("hostile reports:", json.dumps(out, indent=1))
    return out


@pytest.fixture(scope="module")
def as_root(stack, conf):
    """The same probes, run by this test as root, with every secret handed in its environment."""
    probes = _probes()
    handed = {f"APACHE_AIRFLOW_{k.upper()}": v for k, v in _secrets(stack.home).items()}
    report = probes.run_all(conf, "00000000-0000-0000-0000-000000000000", environ=handed)
    print("as root:", json.dumps(report, indent=1))
    return report


# Who holds which secret in the started stack's env files (docs/architecture.md "Secrets by component").
HOLDERS = {
    "fernet_key": {"api-server", "scheduler", "dag-processor", "triggerer"},
    "postgres_password": {"api-server", "scheduler", "dag-processor", "triggerer"},
    "jwt_private_key": {"api-server", "scheduler"},
    "api_secret_key": {"api-server"},
    "redis_password": {"api-server", "scheduler", "worker-1", "flower", "metrics"},  # api-server: login counters
    "flower_password": {"flower"},
    "housekeeper_password": {"housekeeper"},
}


def test_env_files_hold_only_what_each_component_needs(stack):
    envs = {p.stem: p.read_text().replace("\\n", "") for p in sorted((stack.home / "run" / "env").glob("*.json"))}
    held = {name: {c for c, text in envs.items() if value in text} for name, value in _secrets(stack.home).items()}
    print("| secret | " + " | ".join(envs) + " |")
    for name, holders in held.items():
        print(f"| {name} | " + " | ".join("x" if c in holders else "" for c in envs) + " |")
    assert held == {name: HOLDERS.get(name, set()) for name in held}


def test_the_hostile_run_completed(reports):
    assert reports["_state"] == "success"


def test_no_secret_in_the_tasks_environment(reports, as_root, conf):
    assert set(as_root["environ"]) == set(conf["needles"])  # the probe finds each secret it is handed
    assert set(reports["cross_the_boundary"]["environ"]) <= TASK_MAY_HOLD


def test_no_secret_in_other_processes_environ_or_memfds(reports, as_root):
    # as root: the components' secrets are in the stack's processes (their memory, where the launcher's
    # setenv() put them after exec; the key's memfd): the same probe, run by a task, must reach none
    assert {"fernet_key", "postgres_password", "jwt_private_key", "flower_password",
            "housekeeper_password", "redis_password"} <= set(as_root["proc"])
    assert set(reports["cross_the_boundary"]["proc"]) <= TASK_MAY_HOLD


def test_no_secret_in_files_of_the_home(reports, as_root, conf):
    assert set(as_root["files"]) == set(conf["needles"])  # secrets.env, run/env/*.json hold them all
    assert reports["cross_the_boundary"]["files"] == []


def test_no_credential_reaches_the_metadata_database(reports, as_root):
    assert "airflow@airflow" in as_root["db"] and "postgres@airflow" in as_root["db"]
    assert reports["cross_the_boundary"]["db"] == []


def test_the_data_connection_reaches_its_database_only(reports):
    data = reports["data_connection_on_the_metadata_db"]
    assert data["login"] == "resource_data"
    assert data["own_db"] == ["resource_data@resource_data"]  # the probe works: its own database
    assert data["metadata_db"] == []                           # no CONNECT on the metadata database


def test_no_forged_token_is_accepted(reports, as_root):
    # with the private key (root reads it), a forged admin token and task token are accepted
    assert any(a.startswith("rest:eddsa:200") for a in as_root["jwt"]), as_root["jwt"]
    assert any(a.startswith("execution:eddsa") for a in as_root["jwt"]), as_root["jwt"]
    assert reports["cross_the_boundary"]["jwt"] == []


def test_no_write_into_what_root_trusts(reports, as_root):
    assert set(as_root["writes"]) >= {
        "create:run", "create:plugins", "create:dags", "append:supervisord.conf", "append:dags/hostile_victim.py"}
    assert reports["cross_the_boundary"]["writes"] == []


def test_other_dags_xcom_and_variables_are_readable_as_airflow_allows(reports):
    """Airflow 3.3's Execution API gives any task every DAG's XComs and Variables (security_model.rst:
    "No cross-workload isolation in the Execution API"): asserted as Airflow's behaviour, not a block."""
    other = reports["other_dags_data"]
    assert other.get("xcom") == "victim-xcom-value", other
    assert other.get("variable") == "another-dags-variable", other


def test_example_etl_writes_resource_data_as_its_own_role(stack):
    proc = stack.cli("content", "add", "--file", str(REPO_DAGS / "example_etl.py"), "--force", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id, run = _run_dag(stack, "example_etl")
    assert run["state"] == "success", run
    sec = _secrets(stack.home)
    conn = psycopg2.connect(host="127.0.0.1", port=int(stack.env["APACHE_AIRFLOW_POSTGRES_PORT"]), dbname="resource_data",
                            user="postgres", password=sec["postgres_superuser_password"])
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'example_etl_iris'")
            assert cur.fetchone() == ("resource_data",)
            cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'resource_data'")
            assert cur.fetchone() == ("resource_data",)
    finally:
        conn.close()


def test_housekeeper_user_may_edit_pools_not_dags(stack):
    import requests

    pw = _secrets(stack.home)["housekeeper_password"]
    r = requests.post(f"{stack.api}/auth/token", json={"username": "resource-housekeeper", "password": pw}, timeout=30)
    assert r.status_code in (200, 201), r.text
    h = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert requests.get(f"{stack.api}/api/v2/pools", headers=h, timeout=30).status_code == 200
    assert requests.get(f"{stack.api}/api/v2/dags", headers=h, timeout=30).status_code == 403
    assert requests.get(f"{stack.api}/api/v2/connections", headers=h, timeout=30).status_code == 403
    env = json.loads((stack.home / "run" / "env" / "housekeeper.json").read_text())
    assert _secrets(stack.home)["admin_password"] not in json.dumps(env)


def test_content_add_validation_runs_dag_code_without_any_secret(stack, tmp_path_factory):
    """`content add` imports the candidate file as the service user: a file that dumps its environment and
    then fails is refused, and what it saw holds the stack's settings but no generated secret."""
    import os
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="af-hostile-dump-", dir="/tmp"))
    out.chmod(0o777)
    src = Path(tempfile.mkdtemp(prefix="af-hostile-src-", dir="/tmp"))
    src.chmod(0o755)
    dag = src / "hostile_validation.py"
    dag.write_text(
        "# airflow dag (DagBag's safe mode imports only files that name both)\n"
        "import json, os\n"
        f"open(os.path.join({str(out)!r}, f'env-{{os.getpid()}}.json'), 'w').write(json.dumps(dict(os.environ)))\n"
        "raise RuntimeError('refused on purpose, after it ran')\n")
    dag.chmod(0o644)
    try:
        proc = stack.cli("content", "add", "--file", str(dag), timeout=300)
        assert proc.returncode != 0, proc.stdout  # refused: it raised
        dumps = [json.loads(p.read_text()) for p in out.glob("env-*.json")]
        assert dumps, "the validation child did not run the file"  # the probe is real
        assert all(d.get("AIRFLOW_HOME") == str(stack.home / "airflow") for d in dumps)
        blob = json.dumps(dumps)
        leaked = [name for name, value in _secrets(stack.home).items() if value in blob]
        assert leaked == []
        assert not (stack.home / "dags" / dag.name).exists()
    finally:
        for d in (out, src):
            for p in d.iterdir():
                p.unlink()
            os.rmdir(d)
