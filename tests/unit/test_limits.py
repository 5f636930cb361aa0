"""Resource limits: disk thresholds, the pool hold, the api-server's refusal, the worker memory limit's
cgroup (against a fake cgroup tree) and its RLIMIT_DATA fallback, run for real in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote

import pytest

from airflow_resource.stack import components
from airflow_resource.in_airflow import diskspace
from airflow_resource.stack import disk
from airflow_resource.daemons import pool_hold
from airflow_resource.daemons import housekeeper
from airflow_resource.standalone import launch
from airflow_resource.stack import memlimit
from airflow_resource.stack import system
from airflow_resource.in_airflow.diskspace import CRITICAL, OK, WARNING, FileSystem
from tests.unit import aio

pytestmark = pytest.mark.unit
MB = 2**20


def statvfs_of(sizes: dict[str, tuple[int, int]]):
    """A fake os.statvfs: path -> (total MB, free MB), in 4 KiB blocks."""
    def fake(path: str):
        total, free = sizes[path]
        return SimpleNamespace(f_frsize=4096, f_blocks=total * MB // 4096, f_bavail=free * MB // 4096)
    return fake


# ---------------------------------------------------------------- disk: levels and report

@pytest.mark.parametrize("free_mb, level", [(10_000, OK), (999, WARNING), (511, CRITICAL), (0, CRITICAL)])
def test_level_of_a_file_system(free_mb, level):
    assert FileSystem(("/h",), 10_000, free_mb).level(warn_percent=10, critical_mb=512) == level


def test_zero_thresholds_never_warn():
    assert FileSystem(("/h",), 10_000, 0).level(warn_percent=0, critical_mb=0) == OK


def test_free_percent_rounds_and_survives_an_empty_size():
    assert FileSystem(("/h",), 3, 1).free_percent == 33.3
    assert FileSystem(("/h",), 0, 0).free_percent == 0.0


def test_measure_groups_paths_by_file_system(tmp_path):
    a, b = tmp_path / "a", tmp_path / "a" / "not-yet" / "deeper"
    a.mkdir()
    systems = diskspace.measure([a, b], statvfs=statvfs_of({str(a): (1000, 100)}))
    assert len(systems) == 1  # a folder not created yet is on its parent's file system
    assert systems[0].paths == (str(a), str(b))
    assert (systems[0].total_mb, systems[0].free_mb) == (1000, 100)


def test_report_names_the_worst_level_and_what_to_do(make_settings, monkeypatch):
    s = make_settings(disk_warn_percent=10, disk_critical_mb=100)
    monkeypatch.setattr(diskspace, "measure", lambda paths: [FileSystem(("/big",), 10_000, 5_000),
                                                             FileSystem((str(s.home),), 1_000, 50)])
    r = disk.report(s)
    assert r["level"] == CRITICAL
    assert [fs["level"] for fs in r["filesystems"]] == [OK, CRITICAL]
    assert r["filesystems"][1]["free_percent"] == 5.0
    assert str(s.home) in r["advice"] and "APACHE_AIRFLOW_LOG_RETENTION_DAYS" in r["advice"]
    assert "refused" in r["advice"]


def test_report_on_plenty_of_space_has_no_advice(make_settings, monkeypatch):
    monkeypatch.setattr(diskspace, "measure", lambda paths: [FileSystem(("/h",), 10_000, 5_000)])
    r = disk.report(make_settings())
    assert r["level"] == OK and "advice" not in r


def test_watched_paths_leave_out_servers_the_stack_does_not_run(make_settings):
    s = make_settings(postgres_url="postgresql://u:p@db/x", redis_url="redis://cache:6379/0")
    assert s.postgres_dir not in disk.watched_paths(s)
    assert s.postgres_dir in disk.watched_paths(make_settings())


def test_critical_is_off_at_zero(tmp_path):
    assert diskspace.critical([tmp_path], 0) is None
    assert diskspace.critical([tmp_path], 2**40) is not None  # no disk has an exabyte free


@pytest.mark.parametrize("path, refused", [
    ("/api/v2/dags/etl/dagRuns", True),
    ("/airflow/api/v2/dags/etl/dagRuns", True),         # behind a proxy's sub-path
    ("/api/v2/backfills", True),
    ("/api/v2/dags/etl/clearTaskInstances", True),
    ("/api/v2/dags/etl/dagRuns/manual__1/clear", True),
    ("/api/v2/assets/events", True),
    ("/api/v2/dags/etl/dagRuns/list", False),           # a POST that only lists
    ("/api/v2/dags/~/dagRuns/~/taskInstances/list", False),
    ("/auth/token", False),
    ("/execution/task-instances/1/run", False),         # running tasks go on
])
def test_which_requests_create_work(path, refused):
    assert bool(diskspace.NEW_WORK.search(path)) == refused


# ---------------------------------------------------------------- the pool hold

class FakePoolsAPI:
    """The part of the REST API the hold uses: pools (slots only, as on default_pool) and variables."""

    def __init__(self, pools):
        self.pools = {p["name"]: dict(p) for p in pools}
        self.variables: dict[str, dict] = {}

    def paged(self, path, key):
        assert (path, key) == ("/pools", "pools")
        return [dict(p) for p in self.pools.values()]

    def get(self, path):
        from airflow_resource.api import APIError

        key = path.rsplit("/", 1)[1]
        if key not in self.variables:
            raise APIError(404, "not found")
        return self.variables[key]

    def post(self, path, body):
        assert path == "/variables" and body["key"] not in self.variables
        self.variables[body["key"]] = body

    def patch(self, path, body, params=None):
        kind, name = path.split("/")[1], unquote(path.rsplit("/", 1)[1])
        if kind == "variables":
            self.variables[name] = body
        else:
            assert params == {"update_mask": "slots"}
            self.pools[name]["slots"] = body["slots"]

    def delete(self, path):
        del self.variables[path.rsplit("/", 1)[1]]


def test_hold_then_release_gives_every_pool_its_slots_back():
    api = FakePoolsAPI([{"name": "default_pool", "slots": 128}, {"name": "db pool", "slots": 3},
                        {"name": "closed", "slots": 0}])
    assert pool_hold.hold_pools(api) == 2
    assert {p["slots"] for p in api.pools.values()} == {0}
    assert json.loads(api.variables[pool_hold.HOLD_VARIABLE]["value"]) == {"default_pool": 128, "db pool": 3}
    assert pool_hold.hold_pools(api) == 0  # held pools are not held twice (their slots stay known)
    api.pools["db pool"]["slots"] = 5      # changed by hand meanwhile: kept
    assert pool_hold.release_pools(api) == 1
    assert {n: p["slots"] for n, p in api.pools.items()} == {"default_pool": 128, "db pool": 5, "closed": 0}
    assert api.variables == {}
    assert pool_hold.release_pools(api) == 0


def test_a_pool_added_during_a_hold_is_held_too_and_released():
    api = FakePoolsAPI([{"name": "default_pool", "slots": 8}])
    pool_hold.hold_pools(api)
    api.pools["late"] = {"name": "late", "slots": 2}
    assert pool_hold.hold_pools(api) == 1
    assert pool_hold.release_pools(api) == 2
    assert {n: p["slots"] for n, p in api.pools.items()} == {"default_pool": 8, "late": 2}


def test_housekeeper_guard_holds_while_critical_and_releases_once_space_is_back(monkeypatch, tmp_path):
    monkeypatch.setenv(diskspace.PATHS_ENV, str(tmp_path))
    monkeypatch.setenv(diskspace.CRITICAL_ENV, "100")
    calls = []
    low = FileSystem((str(tmp_path),), 1000, 10)
    state = {"fs": low}
    monkeypatch.setattr(diskspace, "critical", lambda paths, mb: state["fs"])
    monkeypatch.setattr(pool_hold, "hold_pools", lambda api: calls.append("hold") or 1)
    monkeypatch.setattr(pool_hold, "release_pools", lambda api: calls.append("release") or 1)
    guard = housekeeper.DiskGuard("http://127.0.0.1:1", "admin")
    guard.check()
    guard.check()
    state["fs"] = None
    guard.check()
    guard.check()
    assert calls == ["hold", "hold", "release"]  # while held each check also holds new pools


def test_housekeeper_guard_retries_when_the_api_refuses(monkeypatch, tmp_path):
    monkeypatch.setenv(diskspace.PATHS_ENV, str(tmp_path))
    monkeypatch.setenv(diskspace.CRITICAL_ENV, "100")
    monkeypatch.setattr(diskspace, "critical", lambda paths, mb: None)
    tries = []

    def release(api):
        tries.append(1)
        if len(tries) == 1:
            raise OSError("connection refused")
        return 0

    monkeypatch.setattr(pool_hold, "release_pools", release)
    guard = housekeeper.DiskGuard("http://127.0.0.1:1", "admin")
    guard.check()
    guard.check()
    guard.check()
    assert len(tries) == 2  # the failed first release (a hold a crash left behind) is tried again, once


# ---------------------------------------------------------------- the api-server's middleware

def _call(middleware, method: str, path: str) -> tuple[int, dict]:
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    aio.run(middleware({"type": "http", "method": method, "path": path}, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body or b"{}")


def test_middleware_refuses_a_trigger_while_the_disk_is_critical(monkeypatch, tmp_path):
    pytest.importorskip("airflow.plugins_manager")
    from airflow_resource.in_airflow import disk_plugin

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    monkeypatch.setenv(diskspace.PATHS_ENV, str(tmp_path))
    monkeypatch.setenv(diskspace.CRITICAL_ENV, "100")
    guard = disk_plugin.DiskGuardMiddleware(app)
    monkeypatch.setattr(diskspace, "critical", lambda paths, mb: FileSystem((str(tmp_path),), 1000, 42))
    status, body = _call(guard, "POST", "/api/v2/dags/etl/dagRuns")
    assert status == 507
    assert f"{tmp_path} has 42 MB free" in body["detail"] and "100 MB" in body["detail"]
    assert _call(guard, "GET", "/api/v2/dags/etl/dagRuns")[0] == 200      # reads go on
    assert _call(guard, "POST", "/api/v2/dags/etl/dagRuns/list")[0] == 200
    monkeypatch.setattr(diskspace, "critical", lambda paths, mb: None)
    assert _call(guard, "POST", "/api/v2/dags/etl/dagRuns")[0] == 200     # space is back


def test_api_server_and_housekeeper_get_the_disk_guard_settings(make_settings, sec):
    s = make_settings(disk_critical_mb=300)
    by = components.by_name(components.build(s, sec, "/pg", "redis-server"))
    for name in ("api-server", "housekeeper"):
        assert by[name].env[diskspace.CRITICAL_ENV] == "300"
        assert str(s.postgres_dir) in by[name].env[diskspace.PATHS_ENV].split(os.pathsep)
    # its own least-privilege FAB user, never the admin's password
    assert by["housekeeper"].env[housekeeper.API_PASSWORD_ENV] == sec.housekeeper_password
    assert sec.admin_password not in json.dumps(by["housekeeper"].env)
    assert sec.housekeeper_password not in " ".join(by["housekeeper"].argv)  # never on a command line


# ---------------------------------------------------------------- the worker memory limit

def test_own_cgroup_reads_the_memory_line():
    text = "9:name=systemd:/\n4:memory:/system.slice/x.service\n3:cpu,cpuacct:/\n0::/\n"
    assert memlimit.own_cgroup(text) == "/system.slice/x.service"
    assert memlimit.own_cgroup("0::/user.slice\n") is None  # cgroup v2 only


def fake_cgroup_root(tmp_path: Path) -> Path:
    root = tmp_path / "memory"
    root.mkdir()
    (root / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    return root


def test_prepare_makes_one_limited_cgroup_per_worker(make_settings, tmp_path, monkeypatch):
    s = make_settings(worker_memory_limit_mb=700)
    s.run_dir.mkdir()
    root = fake_cgroup_root(tmp_path)
    monkeypatch.setattr(system, "is_root", lambda: False)
    env = memlimit.prepare(s, ["worker-1", "worker-2"], system.current_user(), root)
    base = memlimit.stack_cgroup(s, root)
    assert env == {f"worker-{i}": {memlimit.CGROUP_ENV: str(base / f"worker-{i}")} for i in (1, 2)}
    assert (base / "worker-1" / "memory.limit_in_bytes").read_text() == str(700 * MB)
    assert (s.run_dir / memlimit.RECORD).read_text().strip() == str(base)
    removed = []
    monkeypatch.setattr(memlimit, "_rmdir", removed.append)  # a fake tree's files are not a cgroupfs's
    memlimit.remove(s)
    assert removed == [base / "worker-1", base / "worker-2", base]
    assert not (s.run_dir / memlimit.RECORD).exists()


def test_scale_puts_new_workers_beside_the_ones_start_made(make_settings, tmp_path, monkeypatch):
    s = make_settings(worker_memory_limit_mb=700)
    s.run_dir.mkdir()
    root = fake_cgroup_root(tmp_path)
    monkeypatch.setattr(system, "is_root", lambda: False)
    made_by_start = root / "elsewhere" / "apache-airflow-x"  # start ran in another cgroup than this scale
    made_by_start.mkdir(parents=True)
    (s.run_dir / memlimit.RECORD).write_text(f"{made_by_start}\n")
    env = memlimit.prepare(s, ["worker-2"], system.current_user(), root)
    assert env == {"worker-2": {memlimit.CGROUP_ENV: str(made_by_start / "worker-2")}}


def test_prepare_falls_back_to_rlimit_with_a_warning(make_settings, tmp_path, capsys):
    s = make_settings(worker_memory_limit_mb=700)
    env = memlimit.prepare(s, ["worker-1"], system.current_user(), tmp_path / "no-cgroups-here")
    assert env == {"worker-1": {memlimit.RLIMIT_ENV: "700"}}
    assert "RLIMIT_DATA" in capsys.readouterr().err


def test_prepare_does_nothing_when_the_limit_is_off(make_settings, tmp_path):
    assert memlimit.prepare(make_settings(worker_memory_limit_mb=0), ["worker-1"], system.current_user(),
                            fake_cgroup_root(tmp_path)) == {}


def test_default_limit_is_half_the_machine(make_settings):
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MB
    assert abs(make_settings().worker_memory_limit_mb - total_mb // 2) <= 1


def test_stats_read_the_cgroup_the_worker_runs_in(make_settings, tmp_path, monkeypatch):
    own = memlimit.own_cgroup(Path("/proc/self/cgroup").read_text())
    if not own or own == "/":
        pytest.skip("this process is not in a nested cgroup v1 memory cgroup")
    monkeypatch.setattr(memlimit, "V1_ROOT", tmp_path)
    path = tmp_path / own.lstrip("/")  # stands for <stack cgroup>/worker-1; this process is the worker
    path.mkdir(parents=True)
    (path / "memory.usage_in_bytes").write_text(str(300 * MB))
    (path / "memory.limit_in_bytes").write_text(str(1024 * MB))
    (path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    s = make_settings()
    s.run_dir.mkdir()
    (s.run_dir / memlimit.RECORD).write_text(f"{path.parent}\n")
    assert memlimit.stats(s, os.getpid()) == {"memory_mb": 300, "memory_limit_mb": 1024, "oom_kills": 2}
    (s.run_dir / memlimit.RECORD).write_text("/sys/fs/cgroup/memory/another-stack\n")
    assert memlimit.stats(s, os.getpid()) is None


LAUNCH = Path(launch.__file__).resolve()
ALLOCATE = "b = bytearray(200 * 2**20); print('allocated')"


def _launch(env_file: Path, code: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), launch.ENV_FILE_ENV: str(env_file)}
    return subprocess.run([sys.executable, str(LAUNCH), "--", sys.executable, "-c", code], env=env,
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def test_launcher_holds_the_component_to_rlimit_data(tmp_path):
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps({memlimit.RLIMIT_ENV: "100"}))
    proc = _launch(env_file, ALLOCATE)
    assert proc.returncode == 1 and "MemoryError" in proc.stderr  # a task past the limit fails, clearly
    env_file.write_text(json.dumps({memlimit.RLIMIT_ENV: "400"}))
    assert _launch(env_file, ALLOCATE).stdout.strip() == "allocated"


def test_launcher_joins_its_cgroup(tmp_path):
    cgroup = tmp_path / "worker-1"
    cgroup.mkdir()
    (cgroup / "cgroup.procs").write_text("")
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps({memlimit.CGROUP_ENV: str(cgroup)}))
    proc = _launch(env_file, f"import os; print(os.getpid(), '{memlimit.CGROUP_ENV}' in os.environ)")
    pid, leaked = proc.stdout.split()
    assert (cgroup / "cgroup.procs").read_text() == pid  # the launcher execs: the component has its pid
    assert leaked == "False"


def test_launcher_refuses_a_damaged_env_file_with_a_clear_line(tmp_path):
    env_file = tmp_path / "worker-1.json"
    env_file.write_text('{"AIRFLOW_HOME": "/x", ')
    proc = _launch(env_file, "print('ran')")
    assert proc.returncode == 1 and "ran" not in proc.stdout
    assert f"environment file {env_file} is unreadable or damaged" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_launcher_keeps_a_lower_hard_rlimit_it_may_not_raise(tmp_path):
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps({memlimit.RLIMIT_ENV: "100000"}))
    code = "import resource; print(resource.getrlimit(resource.RLIMIT_DATA)[1] // 2**20)"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), launch.ENV_FILE_ENV: str(env_file)}
    proc = subprocess.run(["prlimit", f"--data={300 * MB}", "--", sys.executable, str(LAUNCH), "--",
                           sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "300"
