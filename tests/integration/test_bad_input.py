"""Bad input gets one clear message, the documented exit code, and loses nothing already there."""

from __future__ import annotations

import os
import pwd
import shutil
import socket

import pytest

from airflow_resource.audit import trail
from tests.conftest import cli, make_home, processes_of, stack_env

pytestmark = pytest.mark.integration


@pytest.fixture
def home():
    h = make_home("af-bad-")
    yield h
    for p in processes_of(h):
        p.kill()
    shutil.rmtree(h, ignore_errors=True)


def test_port_in_use_is_refused_before_anything_starts(home):
    env = stack_env(home)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env["APACHE_AIRFLOW_API_PORT"] = str(port)
        proc = cli(env, "manage", "start", timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert f"port {port} for api-server is in use" in proc.stderr
    assert "APACHE_AIRFLOW_API_PORT" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert processes_of(home) == []
    assert not (home / "secrets.env").exists()  # refused before install wrote anything


def test_broken_config_file_is_refused_and_kept(home):
    config = home / "resource.toml"
    broken = "api_port = [unclosed\n"
    config.write_text(broken)
    for args in (("manage", "start"), ("status",), ("credentials",)):
        proc = cli(stack_env(home), *args, timeout=60)
        assert proc.returncode == 1, (args, proc.stderr)
        assert "resource.toml is not valid TOML" in proc.stderr
    assert config.read_text() == broken
    assert processes_of(home) == []


def test_unknown_setting_in_config_file_names_it(home):
    (home / "resource.toml").write_text("api_prot = 5000\n")
    proc = cli(stack_env(home), "manage", "start", timeout=60)
    assert proc.returncode == 1 and "api_prot" in proc.stderr


def test_bad_value_in_environment_names_the_variable(home):
    env = stack_env(home)
    env["APACHE_AIRFLOW_WORKERS"] = "many"
    proc = cli(env, "manage", "start", timeout=60)
    assert proc.returncode == 1 and "APACHE_AIRFLOW_WORKERS" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the home to another user")
def test_home_owned_by_someone_else_is_refused(home):
    keep = home / "dags" / "mine.py"
    keep.parent.mkdir()
    keep.write_text("# a user's DAG\n")
    nobody = pwd.getpwnam("nobody")
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    proc = cli(stack_env(home), "manage", "start", timeout=60)
    assert proc.returncode == 1
    assert f"belongs to uid {nobody.pw_uid}" in proc.stderr
    assert keep.read_text() == "# a user's DAG\n"
    assert sorted(p.name for p in home.iterdir()) == ["dags"]


def test_stop_and_status_when_never_started(home):
    env = stack_env(home)
    stop = cli(env, "manage", "stop", timeout=60)
    assert stop.returncode == 2 and "not running" in stop.stderr
    status = cli(env, "status", "--format", "json", timeout=60)
    assert status.returncode == 2
    assert '"running": false' in status.stdout


def test_wrong_flag_exits_1_with_usage(home):
    proc = cli(stack_env(home), "manage", "start", "--no-such-flag", timeout=60)
    assert proc.returncode == 1 and "unrecognized arguments: --no-such-flag" in proc.stderr


# Files of a running stack that its commands read; logs, data stores and heartbeats change by themselves.
CHANGING = ("logs", "postgres", "redis", "alerts", "data", "airflow", "backups", "dags-test")


def _snapshot(home) -> dict[str, bytes]:
    """Every file a refusal must leave alone; not the audit trail's kept records (run/audit-pending.jsonl:
    a refused `manage scale` is recorded, and with secrets.env damaged the record waits there)."""
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*"))
            if p.is_file() and p.relative_to(home).parts[0] not in CHANGING and "__pycache__" not in p.parts
            and p.name != trail.PENDING_FILE}


def _pids(stack) -> dict[str, int]:
    return {c["name"]: c["pid"] for c in stack.status()["components"]}


def test_damaged_config_of_a_running_stack_is_refused_and_nothing_changes(running_stack):
    home = running_stack.home
    before, pids = _snapshot(home), _pids(running_stack)
    commands = (("status",), ("manage", "restart"), ("manage", "start"), ("manage", "scale", "--workers", "2"))

    def refused(where: str) -> None:
        for args in commands:
            proc = running_stack.cli(*args, timeout=120)
            assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
            assert where in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)

    config = home / "resource.toml"
    config.write_text("log_retention_days = 30\nbackup_keep = 'seven'\n")  # a wrong type
    refused(f"{config}:2")
    config.write_text("workers = 1\n[airflow.core\n")           # not TOML
    refused("resource.toml is not valid TOML")
    config.unlink()

    effective = home / "run" / "effective.json"
    kept = effective.read_bytes()
    effective.write_bytes(kept[: len(kept) // 2])                # cut short, as by a crash
    refused(f"{effective}:")
    effective.write_bytes(kept)

    secrets_file = home / "secrets.env"
    kept = secrets_file.read_bytes()
    lines = kept.split(b"\n")
    lines[2] = b"\0" * 16                                        # a block of zeros
    secrets_file.write_bytes(b"\n".join(lines))
    refused(f"{secrets_file}:3 is damaged")
    secrets_file.write_bytes(kept)

    assert _snapshot(home) == before  # byte for byte
    assert _pids(running_stack) == pids and running_stack.status()["healthy"]
