"""Root never writes through a path the service user controls (issue 13), on a real stack.

As the service user (what any task runs as), plant symlinks to root-owned victims outside the home, FIFOs
and hard links in every directory of the home it can write, under every name root writes anywhere in a
home (derived from the layout table, the component table and the files start writes), and try the issue's
own three links where root's directories no longer let it. Then run the root commands that write into the
home: `manage stop/start`, `restart`, `scale --workers 2`, `content add`, `backup create`, `backup restore`
(into a fresh home). After each one, the victims keep owner, mode and content, and the command either
succeeded or refused naming the planted path.

Hard links: fs.protected_hardlinks=1 (Debian's default) already stops the service user from linking a file
it does not own; the test records that refusal, then plants them as root in its place (a host with that
protection off).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from airflow_resource.config import secrets, settings
from airflow_resource.stack import components, datastores, home_layout, memlimit, plugins
from tests.conftest import cli, free_port_block, start_stack, stop_and_remove

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="a service user to plant as needs root")]

SERVICE = "airflow"
VICTIM_TEXT = "root's victim: must not change\n"
PLANT = """
import json, os, sys
done = []
for path, kind, target in json.loads(sys.argv[1]):
    try:
        if kind == "symlink":
            os.symlink(target, path)
        elif kind == "fifo":
            os.mkfifo(path, 0o600)
        elif kind == "hardlink":
            os.link(target, path)
        done.append([path, kind, "ok"])
    except OSError as exc:
        done.append([path, kind, exc.strerror])
print(json.dumps(done))
"""
DAG = '''\
from datetime import datetime
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("planted_links_probe", start_date=datetime(2024, 1, 1), schedule=None):
    EmptyOperator(task_id="noop")
'''


def root_written_names(s: settings.Settings) -> set[str]:
    """Every file or folder name root creates or rewrites in a home: the layout table's, each component's env
    file and log, the data stores' config, the plugin stubs, supervisord's files, the old temporary names."""
    comps = components.build(s, secrets.placeholder())
    names = {Path(e.rel).name for e in home_layout.table(s) if e.rel and e.owner == home_layout.ROOT}
    names |= {Path(e.rel).name for e in home_layout.table(s) if e.rel}  # folders root makes or repairs
    names |= {f"{c.name}.json" for c in comps} | {f"{c.name}.log" for c in comps} | {c.name for c in comps}
    names |= {datastores.PG_CONF_NAME, "redis.conf", "postgresql.conf", "pw", *(p.file for p in plugins.PLUGINS),
              memlimit.RECORD, "supervisord.pid", "supervisord.sock", "supervisord.log",
              "effective.json", ".installed.json", "secrets.env", ".redis.conf.tmp", ".secrets.env.tmp",
              ".effective.json.tmp", "planted_links_probe.py"}
    # what the service user's own components write in their own folders is theirs to break
    return names - {"housekeeper.heartbeat"}


def service_writable_dirs(home: Path, svc: pwd.struct_passwd) -> list[Path]:
    found = []
    for root, dirs, _files in os.walk(home):
        for d in [Path(root), *(Path(root) / x for x in dirs)]:
            st = os.lstat(d)
            if stat.S_ISLNK(st.st_mode):
                continue
            if ((st.st_uid == svc.pw_uid and st.st_mode & 0o200) or (st.st_gid == svc.pw_gid and st.st_mode & 0o020)
                    or st.st_mode & 0o002):
                found.append(d)
    return sorted(set(found))


def plant_as_service_user(svc: pwd.struct_passwd, plan: list[list[str]]) -> list[list[str]]:
    proc = subprocess.run([sys.executable, "-c", PLANT, json.dumps(plan)], user=svc.pw_uid, group=svc.pw_gid,
                          extra_groups=[], capture_output=True, text=True, timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


class Victims:
    """Root-owned files and a folder outside the home, each planted link's target."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="af-victims-", dir="/tmp"))
        self.dir.chmod(0o755)
        self.file = self.dir / "victim"
        self.file.write_text(VICTIM_TEXT)
        self.file.chmod(0o644)
        self.folder = self.dir / "victim-folder"
        self.folder.mkdir(mode=0o755)
        self.folder.chmod(0o755)
        self.before = self.state()

    def state(self) -> dict:
        out = {}
        for p in (self.file, self.folder, self.dir):
            st = os.stat(p)
            out[str(p)] = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode),
                           p.read_text() if p.is_file() else sorted(x.name for x in p.iterdir()))
        return out

    def assert_unchanged(self, after: str) -> None:
        assert self.state() == self.before, f"a victim outside the home changed after {after}"


@pytest.fixture(scope="module")
def victims():
    v = Victims()
    yield v
    shutil.rmtree(v.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def stack():
    st = start_stack("af-planted-", extra_env={"APACHE_AIRFLOW_LOG_SERVER_PORT": str(free_port_block(3))})
    yield st
    stop_and_remove(st)


@pytest.fixture(scope="module")
def svc():
    return pwd.getpwnam(SERVICE)


def ok_or_clear_refusal(proc: subprocess.CompletedProcess, what: str) -> None:
    refused = proc.returncode == 1 and any(w in proc.stderr for w in ("is a symlink", "hard link", "is a FIFO"))
    assert proc.returncode == 0 or refused, f"{what}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


def plant_everywhere(stack, svc, victims) -> dict[str, int]:
    s = settings.resolve(environ=stack.env)
    names = sorted(root_written_names(s))
    plan, root_links = [], []
    for i, d in enumerate(service_writable_dirs(stack.home, svc)):
        for j, name in enumerate(names):
            path = d / name
            if os.path.lexists(path):
                continue
            kind = ("symlink", "fifo", "hardlink")[(i + j) % 3]
            target = victims.folder if "." not in name and kind == "symlink" else victims.file
            plan.append([str(path), kind, str(target)])
    results = plant_as_service_user(svc, plan)
    for path, kind, outcome in results:
        if kind == "hardlink" and outcome != "ok":
            assert outcome == "Operation not permitted", (path, outcome)  # fs.protected_hardlinks
            root_links.append(path)
        else:
            assert outcome == "ok", (path, kind, outcome)
    for path in root_links:
        os.link(victims.file, path)
    return {"planted": len(results), "dirs": len({Path(p).parent for p, _k, _o in results})}


def test_fresh_home_matches_the_layout_table(stack):
    proc = stack.cli("status", "--verbose", "--format", "json", timeout=120)
    report = json.loads(proc.stdout)
    assert report["layout_drift"] == [], report["layout_drift"]
    assert stat.S_IMODE(stack.home.stat().st_mode) == 0o750 and stack.home.stat().st_uid == 0
    logs = list((stack.home / "logs" / "components").glob("*.log"))
    assert logs and all(stat.S_IMODE(p.stat().st_mode) == 0o640 for p in logs)


def test_the_issues_three_links_cannot_be_planted_any_more(stack, svc, victims):
    """redis/.redis.conf.tmp, run/env (replaced by a link) and postgres/resource.conf, as in the issue: the
    service user can no longer create any of them, nor anything in a directory root writes."""
    s = settings.resolve(environ=stack.env)
    root_dirs = [e.path(s) for e in home_layout.table(s) if e.kind == "dir" and e.owner != home_layout.SERVICE
                 and not (e.mode or 0) & 0o1000]
    plan = [[str(s.redis_dir / ".redis.conf.tmp"), "symlink", str(victims.file)],
            [str(s.run_dir / "env.planted"), "symlink", str(victims.folder)],
            [str(s.postgres_dir / datastores.PG_CONF_NAME), "symlink", str(victims.file)]]
    plan += [[str(d / "planted-by-a-task"), "symlink", str(victims.file)] for d in root_dirs]
    results = plant_as_service_user(svc, plan)
    assert [o for _p, _k, o in results if o != "Permission denied"] == [], results
    proc = subprocess.run(["mv", str(s.run_dir / "env"), str(s.run_dir / "env.old")], user=svc.pw_uid,
                          group=svc.pw_gid, extra_groups=[], capture_output=True, text=True)
    assert proc.returncode != 0 and "Permission denied" in proc.stderr


def test_root_commands_do_not_write_through_planted_links(stack, svc, victims, tmp_path):
    counts = plant_everywhere(stack, svc, victims)
    assert counts["planted"] > 100 and counts["dirs"] >= 5, counts
    print(f"planted {counts['planted']} links/FIFOs in {counts['dirs']} folders")

    proc = stack.cli("manage", "stop", timeout=300)
    assert proc.returncode == 0, proc.stderr
    victims.assert_unchanged("manage stop")
    plant_everywhere(stack, svc, victims)  # what stop removed, and the new folders
    proc = stack.cli("manage", "start", "--timeout", "240", timeout=900)
    ok_or_clear_refusal(proc, "manage start")
    victims.assert_unchanged("manage start")

    plant_everywhere(stack, svc, victims)
    proc = stack.cli("manage", "restart", "--timeout", "240", timeout=900)
    ok_or_clear_refusal(proc, "manage restart")
    victims.assert_unchanged("manage restart")

    plant_everywhere(stack, svc, victims)
    proc = stack.cli("manage", "scale", "--workers", "2", timeout=600)
    ok_or_clear_refusal(proc, "manage scale --workers 2")
    victims.assert_unchanged("manage scale")

    plant_everywhere(stack, svc, victims)
    dag = tmp_path / "planted_links_probe.py"
    dag.write_text(DAG)
    proc = stack.cli("content", "add", str(dag), timeout=600)
    ok_or_clear_refusal(proc, "content add")
    victims.assert_unchanged("content add")

    plant_everywhere(stack, svc, victims)
    passfile = tmp_path / "passphrase"
    passfile.write_text("planted links test passphrase\n")
    passfile.chmod(0o600)
    proc = stack.cli("backup", "create", "--passphrase-file", str(passfile), timeout=600)
    ok_or_clear_refusal(proc, "backup create")
    victims.assert_unchanged("backup create")
    archive = Path(proc.stdout.strip().splitlines()[-1])
    assert archive.is_file() and archive.parent == stack.home / "backups"

    copy = Path(tempfile.mkdtemp(prefix="af-planted-copy-", dir="/tmp"))
    copy.rmdir()  # restore makes a fresh home
    env = {**stack.env, "APACHE_AIRFLOW_HOME": str(copy)}
    try:
        proc = cli(env, "backup", "restore", str(archive), "--passphrase-file", str(passfile), timeout=900)
        ok_or_clear_refusal(proc, "backup restore")
        victims.assert_unchanged("backup restore")
        st = copy.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o750)
        assert (copy / "dags").stat().st_uid == 0 and (copy / "postgres").stat().st_uid != svc.pw_uid
    finally:
        shutil.rmtree(copy, ignore_errors=True)

    proc = stack.cli("status", "--verbose", "--format", "json", timeout=120)
    assert json.loads(proc.stdout)["layout_drift"] == []
