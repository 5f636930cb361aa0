"""home_layout: the one table of who owns what in a home; apply() creates and repairs from it, drift() reports
what differs, for real in a temp home (the service and data users: nobody, so no system user is made)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from airflow_resource.config import settings
from airflow_resource.errors import CommandError
from airflow_resource.stack import home_layout
from airflow_resource.stack.system import RunAs

pytestmark = [pytest.mark.unit,
              pytest.mark.skipif(os.geteuid() != 0, reason="owners other than the caller need root")]

NOBODY = RunAs("nobody", 65534, 65534, "/")


@pytest.fixture
def who() -> home_layout.Owners:
    return home_layout.Owners(NOBODY, NOBODY)


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_every_path_root_writes_is_roots_and_not_writable_by_the_service_user(make_settings):
    s = make_settings()
    rows = {e.rel: e for e in home_layout.table(s)}
    for rel in ("", "run", "run/env", "run/pids", "run/staging", "run/launch.py", settings.EFFECTIVE_FILE,
                "supervisord.conf", "secrets.env", "logs", "logs/components", "plugins", "dags", "airflow",
                "backups"):
        assert rows[rel].owner == home_layout.ROOT, rel
        assert rows[rel].mode is None or not rows[rel].mode & 0o002, rel
    assert rows["backups"].group == home_layout.ROOT and rows["backups"].mode == 0o700  # the metadata dumps
    for rel in ("state", "logs/tasks", "logs/dag_processor", "data", "alerts"):
        assert rows[rel].owner == home_layout.SERVICE, rel
    assert rows["postgres"].owner == rows["redis"].owner == home_layout.DATA
    assert rows["postgres"].mode == rows["redis"].mode == 0o700
    assert rows[""].mode == 0o750 and rows["logs/supervisord.log"].mode == 0o640
    assert settings.Settings.backup_status_file.fget(s).parent == s.run_dir  # the schedule runs as root


def test_a_dags_folder_outside_the_home_is_not_in_the_table(make_settings, tmp_path):
    outside = tmp_path / "mydags"
    s = make_settings(dags_dir=str(outside))
    assert all(e.path(s) != outside for e in home_layout.table(s))


def test_apply_creates_the_layout_and_drift_is_empty(make_settings, who):
    s = make_settings()
    home_layout.apply(s, who)
    assert home_layout.drift(s, who) == []
    assert mode(s.home) == 0o750 and os.stat(s.home).st_gid == NOBODY.gid
    assert os.stat(s.state_dir).st_uid == NOBODY.uid and os.stat(s.run_dir).st_uid == 0
    assert (s.airflow_home / "airflow.cfg").read_text().startswith("#")
    assert mode(s.backups_dir) == 0o700 and os.stat(s.backups_dir).st_uid == 0


def test_drift_names_each_changed_path(make_settings, who):
    s = make_settings()
    home_layout.apply(s, who)
    os.chmod(s.logs_dir, 0o777)
    os.chown(s.plugins_dir, NOBODY.uid, NOBODY.gid)
    (s.run_dir / "launch.py").symlink_to("/etc/passwd")
    found = {d["path"]: d for d in home_layout.drift(s, who)}
    assert found[str(s.logs_dir)]["problem"] == "mode 0777"
    assert "owner nobody" in found[str(s.plugins_dir)]["problem"]
    assert "is a symlink" in found[str(s.run_dir / "launch.py")]["problem"]
    assert set(found) == {str(s.logs_dir), str(s.plugins_dir), str(s.run_dir / "launch.py")}
    (s.run_dir / "launch.py").unlink()
    home_layout.apply(s, who)
    assert home_layout.drift(s, who) == []


def test_apply_takes_run_over_from_the_service_user_and_drops_what_it_planted(make_settings, who, tmp_path):
    """A home of an older version: run/ was the service user's. The start that makes it root's removes what
    the service user left there (a symlink at supervisord.pid would have let root write anywhere)."""
    s = make_settings()
    victim = tmp_path / "victim"
    victim.write_text("v")
    s.run_dir.mkdir(parents=True)
    os.chown(s.run_dir, NOBODY.uid, NOBODY.gid)
    (s.run_dir / "supervisord.pid").symlink_to(victim)
    os.lchown(s.run_dir / "supervisord.pid", NOBODY.uid, NOBODY.gid)
    (s.run_dir / "pids").mkdir()
    (s.run_dir / "pids" / "scheduler").write_text("1 1\n")
    os.chown(s.run_dir / "pids", NOBODY.uid, NOBODY.gid)
    home_layout.apply(s, who)
    assert not os.path.lexists(s.run_dir / "supervisord.pid")
    assert list((s.run_dir / "pids").iterdir()) == [] and os.stat(s.run_dir / "pids").st_uid == 0
    assert victim.read_text() == "v" and os.stat(victim).st_uid == 0


def test_a_symlink_where_the_table_wants_a_directory_is_refused(make_settings, who, tmp_path):
    s = make_settings()
    s.home.mkdir(exist_ok=True)
    (s.home / "plugins").symlink_to(tmp_path)
    with pytest.raises(CommandError, match="plugins is a symlink"):
        home_layout.apply(s, who)


def test_a_dags_folder_outside_the_home_the_service_user_can_write_is_refused(make_settings, who, tmp_path):
    outside = tmp_path / "shared-dags"
    outside.mkdir()
    os.chown(outside, NOBODY.uid, NOBODY.gid)
    s = make_settings(dags_dir=str(outside))
    with pytest.raises(CommandError, match="writable by the service user") as exc:
        home_layout.check_dags_dir(s, who)
    assert "chmod go-w" in exc.value.hint


def test_architecture_doc_shows_the_table_as_generated():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    start = doc.index("<!-- home_layout table")
    body = doc[doc.index("\n", start) + 1:doc.index("<!-- end of home_layout table -->")].strip()
    s = settings.resolve({"home": "/var/lib/apache-airflow"}, environ={})
    assert body == home_layout.markdown(s), "regenerate the table in docs/architecture.md from home_layout.markdown()"


def test_a_data_folder_of_the_service_user_is_handed_to_the_data_user(make_settings, tmp_path):
    """A home of an older version: postgres/ was the service user's. The start hands it, every file, to the data
    user (0700), so no task can read it; a hard link planted in it is refused, its other name untouched."""
    data = RunAs("data", 65533, NOBODY.gid, "/")
    who = home_layout.Owners(NOBODY, data)
    s = make_settings()
    (s.postgres_dir / "base").mkdir(parents=True)
    (s.postgres_dir / "base" / "1").write_text("rows")
    for p in (s.postgres_dir, s.postgres_dir / "base", s.postgres_dir / "base" / "1"):
        os.chown(p, NOBODY.uid, NOBODY.gid)
    s.postgres_dir.chmod(0o755)
    home_layout.apply(s, who)
    assert {os.stat(p).st_uid for p in (s.postgres_dir, s.postgres_dir / "base", s.postgres_dir / "base" / "1")} \
        == {data.uid}
    assert mode(s.postgres_dir) == 0o700
    victim = tmp_path / "victim"
    victim.write_text("v")
    os.chown(s.redis_dir, NOBODY.uid, NOBODY.gid)
    os.link(victim, s.redis_dir / "appendonly.aof")
    with pytest.raises(CommandError, match="hard link"):
        home_layout.apply(s, who)
    assert os.stat(victim).st_uid == 0


def test_taking_plugins_over_drops_the_links_the_service_user_made_and_repairs_log_modes(make_settings, who,
                                                                                         tmp_path):
    s = make_settings()
    s.plugins_dir.mkdir(parents=True)
    (s.plugins_dir / "mine.py").write_text("")
    (s.plugins_dir / "evil.py").symlink_to(tmp_path / "anything.py")
    for p in (s.plugins_dir, s.plugins_dir / "mine.py"):
        os.chown(p, NOBODY.uid, NOBODY.gid)
    os.lchown(s.plugins_dir / "evil.py", NOBODY.uid, NOBODY.gid)
    s.logs_dir.mkdir()
    (s.logs_dir / "supervisord.log").write_text("old\n")
    (s.logs_dir / "supervisord.log").chmod(0o644)
    home_layout.apply(s, who)
    assert sorted(p.name for p in s.plugins_dir.iterdir()) == ["mine.py"]
    assert os.stat(s.plugins_dir / "mine.py").st_uid == 0
    assert mode(s.logs_dir / "supervisord.log") == 0o640
