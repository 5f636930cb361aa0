"""Backups on the real stack: create while it runs and while it is stopped, list, the schedule and its
retention, refused restores that change nothing, and a round trip into a fresh home on other ports
compared through the REST API (DAGs, runs and task states, connections, variables, users).

One source stack for the module; it is stopped before the restored one starts (one stack at a time).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import requests

from tests.archives import rebuild
from tests.conftest import RunningStack, cli, make_home, processes_of, stack_env, start_stack, stop_and_remove
from tests.integration.test_stack import _run_dag

pytestmark = pytest.mark.integration

PASSPHRASE = "correct horse battery staple, for the test"
INTERVAL_MIN = 1
KEEP = 2
SCHEDULE_TIMEOUT_S = 180  # one interval (60 s) plus a loaded machine's backup time
RUNS = (("example_bash", 2), ("example_taskflow_xcom", 1), ("example_retries", 1))
CONNECTION = {"connection_id": "backup_test_db", "conn_type": "postgres", "host": "db.example.org",
              "login": "etl", "password": "conn-secret-4e1f", "port": 5433, "schema": "warehouse",
              "extra": json.dumps({"sslmode": "require"})}
VARIABLE = {"key": "backup_test_var", "value": "variable-value-9c2d", "description": "set by the backup test"}


@pytest.fixture(scope="module")
def passfile():
    """The passphrase in a file only its owner reads: the root CLI reads it at start for the schedule."""
    folder = make_home("af-bk-pass-")
    path = folder / "passphrase"
    path.write_text(PASSPHRASE + "\n")
    path.chmod(0o600)
    yield path
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def source(passfile):
    stack = start_stack("af-bk-src-", extra_env={
        "APACHE_AIRFLOW_BACKUP_INTERVAL_MINUTES": str(INTERVAL_MIN),
        "APACHE_AIRFLOW_BACKUP_KEEP": str(KEEP),
        "APACHE_AIRFLOW_BACKUP_PASSPHRASE_FILE": str(passfile),
    })
    yield stack
    stop_and_remove(stack)


@pytest.fixture(scope="module")
def state():
    """What one test hands the next: the archive and the API's view of the populated stack."""
    return {}


# ---------------------------------------------------------------- helpers

def archives(home: Path, pattern: str = "airflow-backup-*.tar.gz") -> list[Path]:
    return sorted((home / "backups").glob(pattern))


def manifest_of(path: Path) -> dict:
    with tarfile.open(path, "r:gz") as tar:
        return json.loads(tar.extractfile("manifest.json").read())


def members_of(path: Path) -> list[str]:
    with tarfile.open(path, "r:gz") as tar:
        return tar.getnames()


def users(stack: RunningStack) -> dict[str, list[str]]:
    r = requests.get(f"{stack.api}/auth/fab/v1/users", params={"limit": 100}, timeout=30,
                     headers={"Authorization": f"Bearer {stack.token()}"})
    assert r.status_code == 200, r.text
    return {u["username"]: sorted(role["name"] for role in u["roles"]) for u in r.json()["users"]}


def api_view(stack: RunningStack) -> dict:
    """What the REST API shows of everything a backup must bring back."""
    dags = {d["dag_id"]: d["is_paused"] for d in stack.rest("GET", "/dags", params={"limit": 100}).json()["dags"]}
    runs = {}
    for dag_id in dags:
        for run in stack.rest("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100}).json()["dag_runs"]:
            tis = stack.rest("GET", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances").json()
            runs[(dag_id, run["dag_run_id"])] = (run["state"], run.get("run_after"), sorted(
                (t["task_id"], t["map_index"], t["state"], t["try_number"]) for t in tis["task_instances"]))
    conns = {c["connection_id"]: {k: c.get(k) for k in ("conn_type", "host", "login", "port", "schema", "extra")}
             for c in stack.rest("GET", "/connections", params={"limit": 100}).json()["connections"]}
    variables = {v["key"]: v["value"] for v in stack.rest("GET", "/variables", params={"limit": 100}).json()["variables"]}
    return {"dags": dags, "runs": runs, "connections": conns, "variables": variables, "users": users(stack)}


def home_state(home: Path) -> dict[str, tuple]:
    """Size and content hash of every file a restore could replace, and the names at the top of the home."""
    found: dict[str, tuple] = {"/": tuple(sorted(p.name for p in home.iterdir()))}
    for top in ("postgres", "dags", "plugins", "redis", "secrets.env", "resource.toml"):
        root = home / top
        for path in ([root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []):
            if path.is_file():
                found[str(path.relative_to(home))] = (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    return found


# ---------------------------------------------------------------- while the source runs

def test_schedule_takes_a_backup_at_start_and_status_reports_it(source):
    found = source.wait_for(lambda: archives(source.home, "*-scheduled.tar.gz"), SCHEDULE_TIMEOUT_S,
                            "the first scheduled backup")
    m = manifest_of(found[0])
    assert m["kind"] == "scheduled" and m["contents"]["secrets"] == "encrypted"
    assert found[0].stat().st_mode & 0o777 == 0o600
    if os.geteuid() == 0:  # the schedule runs as root: no task reads a dump of the metadata database
        assert found[0].stat().st_uid == 0 and source.home.joinpath("backups").stat().st_mode & 0o777 == 0o700
        svc = pwd.getpwnam("airflow")
        probe = subprocess.run(["setpriv", f"--reuid={svc.pw_uid}", f"--regid={svc.pw_gid}", "--init-groups",
                                "ls", str(found[0])], capture_output=True, text=True)
        assert probe.returncode != 0 and "Permission denied" in probe.stderr

    def reported():
        backup = next(c for c in source.status()["components"] if c["name"] == "backup")
        names = [p.name for p in archives(source.home, "*-scheduled.tar.gz")]
        return backup if backup["healthy"] and any(n in backup["detail"] for n in names) else None

    assert source.wait_for(reported, 60, "status to report the scheduled backup")


def test_populated_stack_backs_up_while_running(source, state, passfile):
    for dag_id, times in RUNS:
        for _ in range(times):
            assert _run_dag(source, dag_id)[1]["state"] == "success"
    r = source.rest("POST", "/connections", json=CONNECTION)
    assert r.status_code == 201, r.text
    r = source.rest("POST", "/variables", json=VARIABLE)
    assert r.status_code == 201, r.text
    r = requests.post(f"{source.api}/auth/fab/v1/users", headers={"Authorization": f"Bearer {source.token()}"},
                      timeout=60, json={"username": "backup-viewer", "email": "bv@example.org", "first_name": "B",
                                        "last_name": "V", "roles": [{"name": "Viewer"}], "password": "viewer-pw-71"})
    assert r.status_code in (200, 201), r.text
    before = api_view(source)
    assert len(before["runs"]) == sum(n for _, n in RUNS)
    assert before["users"]["backup-viewer"] == ["Viewer"]

    started = time.monotonic()
    proc = source.cli("backup", "create", "--passphrase-file", str(passfile), timeout=600)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert path.parent == source.home / "backups" and path.stat().st_mode & 0o777 == 0o600
    m = manifest_of(path)
    assert m["kind"] == "manual" and m["airflow_version"] == "3.3.2" and m["postgres_major"] == "15"
    assert m["contents"]["databases"] == ["airflow", "resource_data"] and m["contents"]["secrets"] == "encrypted"
    names = members_of(path)
    assert names[0] == "manifest.json"
    assert {"database/airflow.dump", "database/resource_data.dump", "dags/example_bash.py",
            "config/effective.json", "secrets/secrets.env.fernet"} <= set(names)
    # The secrets are in the archive only encrypted.
    raw = gzip.decompress(path.read_bytes())
    for conn in source.credentials().values():
        assert conn["auth"]["password"].encode() not in raw
    assert PASSPHRASE.encode() not in raw
    assert api_view(source) == before  # nothing moved while the backup ran
    state.update(archive=path, before=before, backup_s=seconds)
    print(f"\nbackup of the populated stack: {seconds:.1f} s, {path.stat().st_size} bytes")


def test_list_shows_the_archives(source, state):
    proc = source.cli("backup", "list", "--format", "json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = {Path(r["file"]).name: r for r in json.loads(proc.stdout)}
    row = rows[state["archive"].name]
    assert row["kind"] == "manual" and row["size"] == state["archive"].stat().st_size
    assert row["contents"]["dags"] >= 12 and row["contents"]["secrets"] == "encrypted"
    assert row["authenticated_by"] == "passphrase+home"
    assert any(r["kind"] == "scheduled" for r in rows.values())
    text = source.cli("backup", "list", timeout=60)
    assert text.returncode == 0 and state["archive"].name in text.stdout


def without_passphrase(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith("APACHE_AIRFLOW_BACKUP_PASSPHRASE")}


def test_create_can_leave_the_secrets_out(source, state, tmp_path_factory):
    out = tmp_path_factory.mktemp("bk") / "no-secrets.tar.gz"
    proc = source.cli("backup", "create", "--no-secrets", "--output", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert manifest_of(out)["contents"]["secrets"] == "left out"
    assert not any(n.startswith("secrets/") for n in members_of(out))
    proc = source.cli("backup", "create", "--no-secrets", "--output", str(out), timeout=120)
    assert proc.returncode == 1 and "already exists" in proc.stderr
    state["no_secrets"] = out


def test_restore_into_the_running_stack_is_refused(source, state, passfile):
    before = home_state(source.home)
    proc = source.cli("backup", "restore", str(state["archive"]), "--passphrase-file", str(passfile), "--force",
                      timeout=120)
    assert proc.returncode == 1 and "is running" in proc.stderr and "Traceback" not in proc.stderr
    assert home_state(source.home).keys() == before.keys()
    assert source.status()["healthy"]


def test_schedule_keeps_the_newest_scheduled_archives_and_never_a_manual_one(source, state):
    first = archives(source.home, "*-scheduled.tar.gz")[-1]
    stamps = ("20200101T000000Z", "20200102T000000Z")  # older than any real one
    fakes = [first.with_name(f"airflow-backup-{s}-scheduled.tar.gz") for s in stamps]
    for fake in fakes:
        shutil.copyfile(first, fake)

    def pruned():
        names = [p.name for p in archives(source.home, "*-scheduled.tar.gz")]
        return names if len(names) == KEEP and first.name in names and not any(f.name in names for f in fakes) else None

    kept = source.wait_for(pruned, SCHEDULE_TIMEOUT_S, "the next scheduled backup and the pruning")
    assert kept[-1] != first.name  # a new one was taken
    assert state["archive"].exists()  # manual archives stay


# ---------------------------------------------------------------- the source stopped

def test_backup_of_a_stopped_stack_starts_postgres_alone_and_leaves_nothing(source, passfile, tmp_path):
    assert source.cli("manage", "stop", timeout=180).returncode == 0
    # Stopped, the stack's configured passphrase file is not in effect without the setting.
    proc = cli(without_passphrase(source.env), "backup", "create", timeout=120)
    assert proc.returncode == 1 and "passphrase" in proc.stderr and "--no-secrets" in proc.stderr
    out = tmp_path / "stopped.tar.gz"
    proc = source.cli("backup", "create", "--passphrase-file", str(passfile), "--output", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "PostgreSQL alone" in proc.stderr
    assert manifest_of(out)["stack_running"] is False
    assert processes_of(source.home) == []


def _refused(source: RunningStack, archive: Path, *extra: str, expect: str) -> None:
    before = home_state(source.home)
    proc = source.cli("backup", "restore", str(archive), *extra, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert expect in proc.stderr and "nothing" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert home_state(source.home) == before
    assert processes_of(source.home) == []


def test_restore_refuses_a_wrong_or_missing_passphrase(source, state, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    _refused(source, state["archive"], "--force", "--passphrase-file", str(wrong), expect="wrong passphrase")
    proc = cli(without_passphrase(source.env), "backup", "restore", str(state["archive"]), "--force", timeout=120)
    assert proc.returncode == 1 and "encrypted with a passphrase" in proc.stderr


def test_restore_refuses_a_damaged_archive(source, state, passfile, tmp_path):
    good = state["archive"].read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good[: len(good) // 2])
    _refused(source, truncated, "--force", "--passphrase-file", str(passfile), expect="damaged")
    flipped = tmp_path / "flipped.tar.gz"
    middle = len(good) // 2
    flipped.write_bytes(good[:middle] + bytes([good[middle] ^ 0xFF]) + good[middle + 1:])
    _refused(source, flipped, "--force", "--passphrase-file", str(passfile), expect="damaged")
    # A member changed inside a well-formed archive: the (authenticated) manifest's size and checksum notice.
    edited = rebuild(state["archive"], tmp_path / "edited.tar.gz",
                     members={"dags/example_bash.py": lambda b: b + b"\n# changed\n"})
    _refused(source, edited, "--force", "--passphrase-file", str(passfile), expect="its manifest declares")
    not_an_archive = tmp_path / "notes.tar.gz"
    not_an_archive.write_text("hello\n")
    _refused(source, not_an_archive, "--force", "--passphrase-file", str(passfile), expect="damaged")


def test_restore_over_a_home_with_a_database_needs_force(source, state, passfile):
    before = home_state(source.home)
    proc = source.cli("backup", "restore", str(state["archive"]), "--passphrase-file", str(passfile), timeout=120)
    assert proc.returncode == 1 and "--force" in proc.stderr
    assert home_state(source.home) == before


def test_restore_without_secrets_into_a_fresh_home_is_refused(state):
    home = make_home("af-bk-fresh-")
    shutil.rmtree(home)
    proc = cli(stack_env(home), "backup", "restore", str(state["no_secrets"]), timeout=300)
    # Without a passphrase only the home that made it can check its tag: refused before anything is read.
    assert proc.returncode == 1 and "only the secrets of the home that made it" in proc.stderr, proc.stderr
    assert not home.exists()  # the fresh home it began is gone again


def test_restore_with_force_replaces_the_stopped_home(source, state, tmp_path):
    """An archive without secrets goes back into the home whose Fernet key made it; DAGs added since go."""
    secrets_before = (source.home / "secrets.env").read_bytes()
    added = source.home / "dags" / "added_after_the_backup.py"
    added.write_text("# not in the archive\n")
    proc = source.cli("backup", "restore", str(state["no_secrets"]), "--force", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not added.exists()
    archived = {n[len("dags/"):] for n in members_of(state["no_secrets"]) if n.startswith("dags/")}
    assert {str(p.relative_to(source.home / "dags")) for p in (source.home / "dags").rglob("*") if p.is_file()} == archived
    assert (source.home / "secrets.env").read_bytes() == secrets_before
    assert not list(source.home.glob(".*restore*")) and processes_of(source.home) == []
    # The restored cluster starts with the home's secrets and holds the databases: a backup of it works.
    out = tmp_path / "after.tar.gz"
    proc = source.cli("backup", "create", "--no-secrets", "--output", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert manifest_of(out)["contents"]["dags"] == manifest_of(state["no_secrets"])["contents"]["dags"]


# ---------------------------------------------------------------- the round trip

def test_round_trip_into_a_fresh_home_on_other_ports(source, state, passfile):
    assert "archive" in state, "the populated backup was not made"
    assert processes_of(source.home) == []  # the source is stopped: one stack at a time
    home = make_home("af-bk-dst-")
    shutil.rmtree(home)  # a fresh home: restore creates it
    env = stack_env(home)
    restored = RunningStack(home, env)
    try:
        started = time.monotonic()
        proc = cli(env, "backup", "restore", str(state["archive"]), "--passphrase-file", str(passfile), timeout=600)
        restore_s = time.monotonic() - started
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert not list(home.glob(".*restore*"))
        print(f"\nrestore into a fresh home: {restore_s:.1f} s")
        started = time.monotonic()
        proc = cli(env, "manage", "start", "--timeout", "240", timeout=720)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        print(f"first start of the restored home: {time.monotonic() - started:.1f} s")
        after = api_view(restored)
        before = state["before"]
        # resource_postgres is the stack's own connection: the start points it at this home's PostgreSQL.
        assert after["connections"].pop("resource_postgres")["port"] == int(env["APACHE_AIRFLOW_POSTGRES_PORT"])
        before = {**before, "connections": {k: v for k, v in before["connections"].items() if k != "resource_postgres"}}
        for part in ("dags", "runs", "connections", "variables", "users"):
            assert after[part] == before[part], part
        # The restored secrets decrypt what the source's Fernet key encrypted, and the stack runs new work.
        conn = restored.rest("GET", f"/connections/{CONNECTION['connection_id']}").json()
        assert conn.get("password") in (CONNECTION["password"], "***")
        assert restored.rest("GET", f"/variables/{VARIABLE['key']}").json()["value"] == VARIABLE["value"]
        assert _run_dag(restored, "example_bash")[1]["state"] == "success"
        # The restore ran with the database down: its record was kept and written at this first start.
        proc = restored.cli("audit", "--event", "resource.backup.restore", "--format", "json", timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        last = json.loads(proc.stdout)[-1]
        assert last["extra"]["outcome"] == "ok" and last["extra"]["archive"] == str(state["archive"]), last
        assert not (home / "run" / "audit-pending.jsonl").exists()
    finally:
        stop_and_remove(restored)
