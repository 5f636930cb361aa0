"""Pinned sets and the decisions of `manage upgrade` / `manage rollback`, without a stack: which set is
newer, where a set's venv goes, what is refused before anything changes, and that a failure after the stop
rolls back by itself (the stack, pip, pg_dump and the restore replaced by fakes)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from airflow_resource import AIRFLOW_VERSION
from airflow_resource import cli
from airflow_resource.stack import installer
from airflow_resource.config import pinned_sets
from airflow_resource.config import secrets
from airflow_resource.backup import upgrade
from airflow_resource.errors import EXIT_ALREADY, EXIT_ERROR, AlreadySo, CommandError

pytestmark = pytest.mark.unit

OLD, NEW = "3.3.1", AIRFLOW_VERSION


# ---------------------------------------------------------------- the sets in the repository

def test_the_repository_has_the_previous_and_the_current_set_current_is_default():
    sets = pinned_sets.all_sets()
    assert [p.name for p in sets][-2:] == [OLD, NEW]
    assert pinned_sets.default_set().name == NEW == pinned_sets.newest().name
    assert [p.default for p in sets] == [p.name == NEW for p in sets]


def test_every_set_has_a_lock_that_pins_its_airflow_and_the_working_celery():
    for p in pinned_sets.all_sets():
        lock = p.lock_file("3.11").read_text()
        # a hashed lock continues a pin's line with a backslash and its hashes
        assert f"\napache-airflow=={p.airflow} \\\n" in lock
        assert "\ncelery==5.6.3 \\\n" in lock  # 5.7.0 breaks the celery provider (DESIGN.md)
        assert "supervisor==" in lock and "psutil==" in lock  # what the resource's components import


def _fake_set(root: Path, folder: str, airflow: str) -> None:
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / "lock-py3.11.txt").write_text(f"# lock\napache-airflow=={airflow}\ncelery==5.6.3\n")


def test_sets_are_ordered_by_their_airflow_release_not_by_name(tmp_path):
    _fake_set(tmp_path, ".", "3.10.0")
    _fake_set(tmp_path, "sets/3.9.1", "3.9.1")
    _fake_set(tmp_path, "sets/3.2.0", "3.2.0")
    sets = pinned_sets.all_sets(tmp_path)
    assert [p.name for p in sets] == ["3.2.0", "3.9.1", "3.10.0"]
    assert pinned_sets.newest(tmp_path).default


def test_an_unknown_set_names_the_known_ones(tmp_path):
    _fake_set(tmp_path, ".", "3.3.2")
    with pytest.raises(CommandError, match="unknown pinned set '9.9.9'") as exc:
        pinned_sets.get("9.9.9", tmp_path)
    assert "3.3.2" in exc.value.hint


def test_a_missing_lock_for_this_python_says_how_to_make_it(tmp_path):
    _fake_set(tmp_path, "sets/3.3.1", "3.3.1")
    p = pinned_sets.PinnedSet("3.3.1", "3.3.1", tmp_path / "sets/3.3.1", False)
    with pytest.raises(CommandError, match="no lock file for Python 3.12") as exc:
        p.lock_file("3.12")
    assert "scripts/lock.sh 3.3.1" in exc.value.hint


# ---------------------------------------------------------------- where a set's venv goes

def test_venv_for_the_default_set_is_the_configured_one_unless_in_use_or_holding_another(tmp_path):
    home, configured = tmp_path / "home", tmp_path / "venv"
    default = pinned_sets.PinnedSet(NEW, NEW, tmp_path, True)
    other = pinned_sets.PinnedSet(OLD, OLD, tmp_path, False)
    assert pinned_sets.venv_for(home, default, configured, home / "venvs" / OLD, NEW) == configured
    assert pinned_sets.venv_for(home, default, configured, home / "venvs" / OLD, None) == configured
    # never rebuilt in place: in use by the home, or holding another Airflow
    assert pinned_sets.venv_for(home, default, configured, configured, OLD) == home / "venvs" / NEW
    assert pinned_sets.venv_for(home, default, configured, None, OLD) == home / "venvs" / NEW
    assert pinned_sets.venv_for(home, other, configured, None, None) == home / "venvs" / OLD


def test_the_home_record_points_settings_at_its_venv_and_keeps_the_configured_one(make_settings, home, tmp_path):
    s = make_settings(venv=str(tmp_path / "cli-venv"))
    assert s.venv == s.configured_venv == tmp_path / "cli-venv"
    pinned_sets.write_record(home, {"pinned_set": OLD, "airflow": OLD, "venv": str(home / "venvs" / OLD)})
    s = make_settings(venv=str(tmp_path / "cli-venv"))
    assert s.venv == home / "venvs" / OLD
    assert s.configured_venv == tmp_path / "cli-venv"
    assert s.sources["venv"] == "home install record"
    assert "configured_venv" not in s.to_json()


def test_a_home_recorded_before_sets_existed_runs_the_airflow_it_recorded(make_settings, home):
    pinned_sets.write_record(home, {"airflow": NEW, "installed_at": 1})
    assert installer.home_set(make_settings()).name == NEW


# ---------------------------------------------------------------- a fake installed home

def fake_venv(path: Path, airflow: str | None) -> Path:
    site = path / "lib" / "python3.11" / "site-packages"
    (site / "statsd").mkdir(parents=True, exist_ok=True)
    (site / "statsd" / "__init__.py").write_text("")
    (site / "airflow_resource-0.1.0.dist-info").mkdir(exist_ok=True)
    if airflow:
        (site / f"apache_airflow-{airflow}.dist-info").mkdir(exist_ok=True)
    return path


@pytest.fixture
def installed(make_settings, home, tmp_path):
    """A home installed on the previous set: its venv in <home>/venvs/3.3.1, the configured (CLI) venv
    holding the current set, secrets generated, PostgreSQL's data folder present."""
    configured = fake_venv(tmp_path / "cli-venv", NEW)
    fake_venv(home / "venvs" / OLD, OLD)
    pinned_sets.write_record(home, {"pinned_set": OLD, "airflow": OLD, "venv": str(home / "venvs" / OLD)})
    (home / "postgres").mkdir()
    (home / "postgres" / "PG_VERSION").write_text("15\n")

    def make(**flags):
        s = make_settings(venv=str(configured), **flags)
        secrets.ensure(s.secrets_file)
        return s

    return make


class FakeWorld:
    """Records what upgrade/rollback did to the stack, the venvs, the backups and the restore."""

    def __init__(self, monkeypatch, home: Path, running: bool = True, start_fails: str | None = None,
                 venv_broken: bool = False):
        self.calls: list[tuple] = []
        self.running = running
        self.home = home
        w = self

        def start(s, timeout, wait=True):
            w.calls.append(("start", str(s.venv), s.pinned_set))
            if start_fails and s.pinned_set == NEW:
                w.running = True  # half started: the rollback must stop it
                raise CommandError(start_fails, "fix it")
            w.running = True
            return type("St", (), {"migrate_s": 1.5})()

        def stop(s, timeout, force=False):
            w.calls.append(("stop", str(s.venv)))
            w.running = False

        def create(s, sec, who, running, passphrase, output=None, kind="manual"):
            dest = s.backups_dir / f"airflow-backup-{kind}.tar.gz"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(b"archive")
            w.calls.append(("backup", kind, str(s.venv), running, passphrase))
            return dest, {"airflow_version": installer.airflow_version(s.venv)}

        def verify(s, pinned):
            w.calls.append(("verify", str(s.venv)))
            if venv_broken:
                raise CommandError(f"the venv {s.venv} does not run Airflow {pinned.airflow}")

        monkeypatch.setattr(upgrade.startup, "start", start)
        monkeypatch.setattr(upgrade.shutdown, "stop", stop)
        monkeypatch.setattr(upgrade.handle, "is_running", lambda s: w.running)
        monkeypatch.setattr(upgrade.handle, "stack_processes", lambda s: [])
        monkeypatch.setattr(upgrade.backup, "create", create)
        monkeypatch.setattr(upgrade.backup, "make_folder", lambda s: None)
        monkeypatch.setattr(upgrade.system, "run_as", lambda name: None)
        monkeypatch.setattr(upgrade, "verify_venv", verify)
        monkeypatch.setattr(upgrade.installer, "ensure_venv",
                            lambda venv, pinned: w.calls.append(("ensure_venv", str(venv), pinned.name)) or None)
        monkeypatch.setattr(upgrade.restore, "restore",
                            lambda s, path, pf, force, **_: w.calls.append(("restore", str(s.venv), path.name, force)))
        monkeypatch.setattr(upgrade.archive, "read_manifest", lambda path: {"created": "then", "auth": {"home": {}}})

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


def no_confirm(question, yes):
    return None


# ---------------------------------------------------------------- refusals before anything changes

def test_upgrade_of_a_home_with_nothing_installed_is_refused(make_settings):
    with pytest.raises(CommandError, match="nothing installed in") as exc:
        upgrade.plan_upgrade(make_settings(), None)
    assert exc.value.exit_code == EXIT_ERROR and "manage install" in exc.value.hint


def test_upgrade_to_an_unknown_set_is_refused(installed):
    with pytest.raises(CommandError, match="unknown pinned set '4.0.0'"):
        upgrade.plan_upgrade(installed(), "4.0.0")


def test_upgrade_to_the_set_the_home_runs_is_already_so(installed):
    with pytest.raises(AlreadySo, match=f"already runs pinned set {OLD}"):
        upgrade.plan_upgrade(installed(), OLD)


def test_upgrade_to_an_older_set_is_refused_and_names_rollback(installed, home):
    pinned_sets.write_record(home, {"pinned_set": NEW, "airflow": NEW, "venv": None})
    with pytest.raises(CommandError, match="older than the one .* runs.*only moves forward") as exc:
        upgrade.plan_upgrade(installed(), OLD)
    assert exc.value.exit_code == EXIT_ERROR and "manage rollback" in exc.value.hint


def test_upgrade_of_a_home_on_an_external_postgres_is_refused(installed):
    with pytest.raises(CommandError, match="keeps a backup of the embedded PostgreSQL"):
        upgrade.plan_upgrade(installed(postgres_url="postgresql://u@db.example.org/airflow"), NEW)


def test_plan_reuses_the_configured_venv_that_holds_the_new_set(installed, tmp_path, home):
    p = upgrade.plan_upgrade(installed(), None)
    assert (p.current.name, p.target.name) == (OLD, NEW)
    assert p.current_venv == home / "venvs" / OLD
    assert p.target_venv == tmp_path / "cli-venv"


def test_upgrade_without_yes_off_a_terminal_is_refused(installed, monkeypatch, home):
    world = FakeWorld(monkeypatch, home)
    before = (home / pinned_sets.HOME_RECORD).read_text()
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(CommandError, match="not confirmed") as exc:
        upgrade.upgrade(installed(), None, yes=False, timeout=60)
    assert "--yes" in exc.value.hint
    assert world.calls == [] and (home / pinned_sets.HOME_RECORD).read_text() == before


def test_a_broken_new_venv_is_refused_before_the_stack_stops(installed, monkeypatch, home):
    world = FakeWorld(monkeypatch, home, venv_broken=True)
    before = (home / pinned_sets.HOME_RECORD).read_text()
    with pytest.raises(CommandError, match="does not run Airflow"):
        upgrade.upgrade(installed(), None, yes=True, timeout=60, confirm=no_confirm)
    assert world.names() == ["ensure_venv", "verify"]  # no stop, no backup
    assert (home / pinned_sets.HOME_RECORD).read_text() == before


# ---------------------------------------------------------------- upgrade

def test_upgrade_builds_stops_backs_up_then_migrates_with_the_new_venv(installed, monkeypatch, home, tmp_path):
    world = FakeWorld(monkeypatch, home)
    report = upgrade.upgrade(installed(), None, yes=True, timeout=60, confirm=no_confirm)
    new_venv, old_venv = str(tmp_path / "cli-venv"), str(home / "venvs" / OLD)
    assert world.calls == [
        ("ensure_venv", new_venv, NEW), ("verify", new_venv), ("stop", old_venv),
        ("backup", "pre-upgrade", old_venv, False, None),  # stopped; secrets stay in this home
        ("start", new_venv, NEW)]
    record = pinned_sets.read_record(home)
    assert (record["pinned_set"], record["airflow"], record["venv"]) == (NEW, NEW, None)
    assert record["previous"] == {"pinned_set": OLD, "airflow": OLD, "venv": old_venv,
                                  "backup": str(home / "backups" / "airflow-backup-pre-upgrade.tar.gz")}
    assert report["from"]["airflow"] == OLD and report["to"]["airflow"] == NEW
    assert report["timings_s"]["migrate"] == 1.5 and report["backup"] == record["previous"]["backup"]
    json.dumps(report)  # --format json


def test_upgrade_of_a_stopped_stack_leaves_it_stopped(installed, monkeypatch, home):
    world = FakeWorld(monkeypatch, home, running=False)
    report = upgrade.upgrade(installed(), None, yes=True, timeout=60, confirm=no_confirm)
    assert world.names() == ["ensure_venv", "verify", "backup", "start", "stop"]
    assert report["running"] is False and world.running is False


def test_a_failed_migration_rolls_back_by_itself(installed, monkeypatch, home):
    world = FakeWorld(monkeypatch, home, start_fails="airflow db migrate failed:\nalembic.util.exc.CommandError")
    before = pinned_sets.read_record(home)
    with pytest.raises(CommandError) as exc:
        upgrade.upgrade(installed(), None, yes=True, timeout=60, confirm=no_confirm)
    old_venv = str(home / "venvs" / OLD)
    assert world.names() == ["ensure_venv", "verify", "stop", "backup", "start", "stop", "restore", "start"]
    assert world.calls[-2] == ("restore", old_venv, "airflow-backup-pre-upgrade.tar.gz", True)
    assert world.calls[-1] == ("start", old_venv, OLD)  # it ran before: it runs again, on the old set
    assert pinned_sets.read_record(home) == before
    message = exc.value.message
    assert "failed and was rolled back" in message and f"runs pinned set {OLD}" in message
    assert "airflow db migrate failed" in message and exc.value.exit_code == EXIT_ERROR
    assert "the new venv stays" in exc.value.hint


def test_a_failed_rollback_after_a_failed_upgrade_says_how_to_restore_by_hand(installed, monkeypatch, home):
    world = FakeWorld(monkeypatch, home, start_fails="airflow db migrate failed")

    def restore_fails(s, path, pf, force, **_):
        raise CommandError("pg_restore failed")

    monkeypatch.setattr(upgrade.restore, "restore", restore_fails)
    with pytest.raises(CommandError, match="and so did the rollback: pg_restore failed") as exc:
        upgrade.upgrade(installed(), None, yes=True, timeout=60, confirm=no_confirm)
    assert "backup restore" in exc.value.hint and "airflow-backup-pre-upgrade.tar.gz" in exc.value.hint
    assert world.names()[-1] == "stop"


# ---------------------------------------------------------------- rollback

def test_rollback_without_an_upgrade_is_already_so(installed):
    with pytest.raises(AlreadySo, match="no upgrade to roll back"):
        upgrade.rollback(installed(), yes=True, timeout=60, confirm=no_confirm)


def test_rollback_goes_back_to_the_previous_set_with_its_backup(installed, monkeypatch, home, tmp_path):
    world = FakeWorld(monkeypatch, home)
    upgrade.upgrade(installed(), None, yes=True, timeout=60, confirm=no_confirm)
    world.calls.clear()
    report = upgrade.rollback(installed(), yes=True, timeout=60, confirm=no_confirm)
    old_venv, new_venv = str(home / "venvs" / OLD), str(tmp_path / "cli-venv")
    assert world.calls == [
        ("stop", new_venv), ("backup", "pre-rollback", new_venv, False, None),
        ("restore", old_venv, "airflow-backup-pre-upgrade.tar.gz", True), ("start", old_venv, OLD)]
    record = pinned_sets.read_record(home)
    assert (record["pinned_set"], record["venv"]) == (OLD, old_venv) and "previous" not in record
    assert record["rolled_back_from"]["backup"].endswith("airflow-backup-pre-rollback.tar.gz")
    assert report["to"]["airflow"] == OLD and installer.home_set(installed()).name == OLD


def test_rollback_with_its_backup_gone_is_refused_before_anything_stops(installed, monkeypatch, home):
    world = FakeWorld(monkeypatch, home)
    upgrade.upgrade(installed(), None, yes=True, timeout=60, confirm=no_confirm)
    Path(pinned_sets.read_record(home)["previous"]["backup"]).unlink()
    world.calls.clear()
    before = (home / pinned_sets.HOME_RECORD).read_text()
    with pytest.raises(CommandError, match="pre-upgrade backup .* is gone"):
        upgrade.rollback(installed(), yes=True, timeout=60, confirm=no_confirm)
    assert world.calls == [] and (home / pinned_sets.HOME_RECORD).read_text() == before


def test_a_failed_restore_in_rollback_leaves_the_record_on_the_newer_set(installed, monkeypatch, home):
    world = FakeWorld(monkeypatch, home)
    upgrade.upgrade(installed(), None, yes=True, timeout=60, confirm=no_confirm)
    before = pinned_sets.read_record(home)

    def restore_fails(s, path, pf, force, **_):
        raise CommandError("the backup is damaged")

    monkeypatch.setattr(upgrade.restore, "restore", restore_fails)
    with pytest.raises(CommandError, match="damaged"):
        upgrade.rollback(installed(), yes=True, timeout=60, confirm=no_confirm)
    assert pinned_sets.read_record(home) == before
    assert world.names()[-1] == "backup"


def test_rollback_refuses_an_untagged_pre_upgrade_backup_before_it_stops_anything(installed, monkeypatch, home):
    world = FakeWorld(monkeypatch, home)
    upgrade.upgrade(installed(), None, yes=True, timeout=60, confirm=no_confirm)
    world.calls.clear()
    monkeypatch.setattr(upgrade.archive, "read_manifest", lambda path: {"created": "then"})  # made before tags
    with pytest.raises(CommandError, match="no authentication tag") as exc:
        upgrade.rollback(installed(), yes=True, timeout=60, confirm=no_confirm)
    assert "--allow-unauthenticated" in exc.value.hint and world.calls == []


# ---------------------------------------------------------------- the CLI

@pytest.fixture
def cli_home(home, monkeypatch):
    for k in [k for k in __import__("os").environ if k.startswith("APACHE_AIRFLOW_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("APACHE_AIRFLOW_HOME", str(home))
    return home


def test_cli_upgrade_with_nothing_installed_exits_1(cli_home, capsys):
    assert cli.main(["manage", "upgrade", "--yes"]) == EXIT_ERROR
    assert "nothing installed in" in capsys.readouterr().err


def test_cli_rollback_takes_no_to(cli_home, capsys):
    assert cli.main(["manage", "rollback", "--to", OLD, "--yes"]) == EXIT_ERROR
    assert "rollback takes no --to" in capsys.readouterr().err


def test_cli_install_on_an_unknown_set_is_refused_before_anything_is_written(cli_home, capsys):
    assert cli.main(["manage", "install", "--pinned-set", "1.0.0"]) == EXIT_ERROR
    assert "unknown pinned set '1.0.0'" in capsys.readouterr().err
    assert list(cli_home.iterdir()) == []


def test_cli_install_on_another_set_than_the_home_runs_is_refused(cli_home, capsys):
    pinned_sets.write_record(cli_home, {"pinned_set": NEW, "airflow": NEW, "venv": None})
    assert cli.main(["manage", "install", "--pinned-set", OLD]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"installed on pinned set {NEW}, not {OLD}" in err and "manage upgrade" in err


def test_cli_info_lists_the_sets_and_the_home(cli_home, capsys):
    assert cli.main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in data["pinned_sets"]][-2:] == [OLD, NEW]
    assert data["this_home"] == {"home": str(cli_home), "installed": False}
    assert EXIT_ALREADY == 2  # the contract's "already so" (upgrade to the set the home runs)


def test_settings_replace_keeps_the_configured_venv(make_settings, tmp_path):
    s = make_settings(venv=str(tmp_path / "v"))
    assert dataclasses.replace(s, venv=tmp_path / "w").configured_venv == tmp_path / "v"


def test_the_running_stacks_remembered_setting_is_not_a_request_for_another_set(make_settings, home):
    """effective.json holds the pinned_set setting a stack started with (the default), not the home's set."""
    pinned_sets.write_record(home, {"pinned_set": OLD, "airflow": OLD, "venv": str(home / "venvs" / OLD)})
    s = make_settings()
    installer.check_pinned_set(dataclasses.replace(s, pinned_set=NEW, sources={"pinned_set": "running stack"}))
    with pytest.raises(CommandError, match=f"installed on pinned set {OLD}, not {NEW}"):
        installer.check_pinned_set(dataclasses.replace(s, pinned_set=NEW, sources={"pinned_set": "flag"}))


def test_a_fresh_home_asked_for_an_older_set_refuses_a_newer_archive(make_settings, tmp_path):
    from airflow_resource.backup import restore

    s = make_settings(venv=str(fake_venv(tmp_path / "cli-venv", NEW)), pinned_set=OLD)
    assert installer.home_airflow_version(s) == OLD  # not the configured venv's
    with pytest.raises(CommandError, match=f"from Airflow {NEW}, newer than this home's {OLD}"):
        restore.check_compatible({"postgres_major": "15", "airflow_version": NEW}, "15",
                                 installer.home_airflow_version(s))
