"""Backups without a stack: the archive format and its checks, the passphrase encryption, what create puts
in an archive (pg_dump replaced by a fake), retention, the schedule's timing, the restore's swap and checks."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from airflow_resource.backup import archive
from airflow_resource.backup import create as backup
from airflow_resource.daemons import backup_schedule
from airflow_resource import cli
from airflow_resource.stack import components
from airflow_resource.stack import probes
from airflow_resource.backup import restore
from airflow_resource.config import secrets
from airflow_resource.config import settings
from airflow_resource.errors import CommandError

pytestmark = pytest.mark.unit

T0 = 1_764_000_000.0  # 2025-11-24T16:00:00Z


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def written(tmp_path: Path, files: dict[str, bytes] | None = None) -> Path:
    root = tree(tmp_path / "src", files or {"dags/a.py": b"print('a')\n", "database/airflow.dump": b"\0dump"})
    dest = tmp_path / "out.tar.gz"
    archive.write(dest, {"format": archive.FORMAT, "created_unix": T0, "files": archive.file_entries(root)}, root)
    return dest


def retar(src: Path, dst: Path, extra: tarfile.TarInfo | None = None, drop: str | None = None) -> Path:
    with tarfile.open(src, "r:gz") as tin, tarfile.open(dst, "w:gz") as tout:
        for m in tin.getmembers():
            if m.name != drop:
                tout.addfile(m, tin.extractfile(m))
        if extra is not None:
            tout.addfile(extra, io.BytesIO(b"x" * extra.size) if extra.isfile() else None)
    return dst


# ---------------------------------------------------------------- the archive format

def test_archive_is_private_manifest_first_and_extracts_verified(tmp_path):
    dest = written(tmp_path)
    assert dest.stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob(".*partial"))
    with tarfile.open(dest, "r:gz") as tar:
        assert tar.getnames() == ["manifest.json", "dags/a.py", "database/airflow.dump"]
    assert archive.read_manifest(dest)["files"][0]["path"] == "dags/a.py"
    manifest = archive.extract_verified(dest, tmp_path / "x")
    assert (tmp_path / "x" / "dags" / "a.py").read_bytes() == b"print('a')\n"
    assert len(manifest["files"]) == 2


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"not a tar at all", lambda b: b""],
                         ids=["truncated", "not-a-tar", "empty"])
def test_a_damaged_file_is_refused_as_damaged(tmp_path, damage):
    dest = written(tmp_path)
    dest.write_bytes(damage(dest.read_bytes()))
    with pytest.raises(CommandError, match="damaged or not a backup archive"):
        archive.extract_verified(dest, tmp_path / "x")


def test_a_changed_member_fails_its_checksum(tmp_path):
    dest = written(tmp_path)
    changed = tmp_path / "changed.tar.gz"
    with tarfile.open(dest, "r:gz") as tin, tarfile.open(changed, "w:gz") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()
            if m.name == "dags/a.py":
                data = data.replace(b"a", b"b")
            tout.addfile(m, io.BytesIO(data))
    with pytest.raises(CommandError, match="checksum mismatch in dags/a.py"):
        archive.extract_verified(changed, tmp_path / "x")


@pytest.mark.parametrize("name, kind", [("../escape.py", tarfile.REGTYPE), ("/etc/passwd", tarfile.REGTYPE),
                                        ("dags/link", tarfile.SYMTYPE), ("dags/extra.py", tarfile.REGTYPE)])
def test_unlisted_unsafe_or_non_file_members_are_refused(tmp_path, name, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = 1 if kind == tarfile.REGTYPE else 0
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/passwd"
    bad = retar(written(tmp_path), tmp_path / "bad.tar.gz", extra=info)
    with pytest.raises(CommandError, match="unexpected member"):
        archive.extract_verified(bad, tmp_path / "x")
    assert not (tmp_path / "escape.py").exists()


def test_a_missing_member_is_refused(tmp_path):
    bad = retar(written(tmp_path), tmp_path / "bad.tar.gz", drop="database/airflow.dump")
    with pytest.raises(CommandError, match="missing"):
        archive.extract_verified(bad, tmp_path / "x")


def test_manifest_must_come_first_with_a_known_format(tmp_path):
    plain = tmp_path / "plain.tar.gz"
    with tarfile.open(plain, "w:gz") as tar:
        info = tarfile.TarInfo("manifest.json")
        body = json.dumps({"format": 99, "files": []}).encode()
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    with pytest.raises(CommandError, match="unknown manifest format 99"):
        archive.read_manifest(plain)


# ---------------------------------------------------------------- passphrase

def test_secrets_round_trip_and_a_wrong_passphrase_is_named():
    token, params = archive.encrypt(b"APACHE_AIRFLOW_FERNET_KEY=k\n", "pass phrase")
    assert b"FERNET" not in token and params["kdf"] == "scrypt" and params["salt"]
    assert archive.decrypt(token, "pass phrase", params) == b"APACHE_AIRFLOW_FERNET_KEY=k\n"
    with pytest.raises(CommandError, match="wrong passphrase"):
        archive.decrypt(token, "pass phrase!", params)


def test_each_encryption_has_its_own_salt():
    assert archive.encrypt(b"x", "p")[1]["salt"] != archive.encrypt(b"x", "p")[1]["salt"]


def test_passphrase_precedence_file_then_environment_then_setting(tmp_path):
    flag, configured = tmp_path / "flag", tmp_path / "configured"
    flag.write_text("from the flag\nsecond line ignored\n")
    configured.write_text("from the setting\n")
    env = {archive.PASSPHRASE_ENV: "from the environment"}
    assert archive.read_passphrase(flag, env, str(configured)) == "from the flag"
    assert archive.read_passphrase(None, env, str(configured)) == "from the environment"
    assert archive.read_passphrase(None, {}, str(configured)) == "from the setting"
    assert archive.read_passphrase(None, {}, "") is None


@pytest.mark.parametrize("content, match", [("\n", "is empty"), (None, "cannot read")])
def test_unusable_passphrase_file_is_an_error(tmp_path, content, match):
    path = tmp_path / "pw"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CommandError, match=match):
        archive.read_passphrase(path, {})


# ---------------------------------------------------------------- create (pg_dump faked)

@pytest.fixture
def installed(make_settings, home, monkeypatch):
    s = make_settings(redis_url="redis://:redispass@cache:6379/0")
    tree(home, {"postgres/PG_VERSION": b"15\n", "dags/etl.py": b"# dag\n", "dags/__pycache__/etl.pyc": b"\0",
                "plugins/p.py": b"# plugin\n", "resource.toml": b"workers = 2\n"})
    s.backups_dir.mkdir()
    dumped = []
    monkeypatch.setattr(backup.pgdump, "dump", lambda port, sec, db, out: (dumped.append((port, db)), out.write_bytes(b"PGDMP")))
    return s, dumped


def test_create_holds_databases_files_config_and_encrypted_secrets(installed, sec):
    s, dumped = installed
    dest, m = backup.create(s, sec, None, running=True, passphrase="pp")  # type: ignore[arg-type]
    assert dest.parent == s.backups_dir and dest.name.startswith(backup.PREFIX) and dest.stat().st_mode & 0o777 == 0o600
    assert dumped == [(s.postgres_port, "airflow"), (s.postgres_port, "resource_data")]
    paths = [f["path"] for f in m["files"]]
    assert paths == ["config/effective.json", "config/resource.toml", "dags/etl.py", "database/airflow.dump",
                     "database/resource_data.dump", "plugins/p.py", backup.SECRETS_MEMBER]
    assert m["contents"] == {"databases": ["airflow", "resource_data"], "dags": 1, "plugins": 1,
                             "config": ["effective.json", "resource.toml"], "secrets": "encrypted"}
    assert m["postgres_major"] == "15" and m["kind"] == "manual"
    assert m["fernet_key_sha256"] == archive.fingerprint(sec.fernet_key)
    out = archive.extract_verified(dest, s.home / "x")
    assert out["files"] == m["files"]
    effective = json.loads((s.home / "x" / "config" / "effective.json").read_text())
    assert effective["redis_url"] == "redis://:********@cache:6379/0"
    text = archive.decrypt((s.home / "x" / backup.SECRETS_MEMBER).read_bytes(), "pp", m["secrets_encryption"]).decode()
    assert secrets.from_mapping(secrets.parse_env_file(text)) == sec
    assert not list(s.backups_dir.glob(".backup-*"))  # the staging folder is gone


def test_effective_settings_mask_passwords_and_secret_looking_airflow_options(make_settings):
    s = make_settings(environ={"AIRFLOW__SMTP__SMTP_PASSWORD": "smtp-pw", "AIRFLOW__CORE__PARALLELISM": "64"},
                      redis_url="redis://:rpw@cache:6379/0")
    data = backup.effective_settings(s)
    assert data["airflow_options"] == {"AIRFLOW__SMTP__SMTP_PASSWORD": "********", "AIRFLOW__CORE__PARALLELISM": "64"}
    assert "rpw" not in json.dumps(data) and "smtp-pw" not in json.dumps(data)


def test_create_without_passphrase_leaves_the_secrets_out(installed, sec):
    s, _ = installed
    dest, m = backup.create(s, sec, None, running=True, passphrase=None, kind=backup.SCHEDULED)  # type: ignore[arg-type]
    assert m["contents"]["secrets"] == "left out" and m["secrets_encryption"] is None
    assert backup.SECRETS_MEMBER not in [f["path"] for f in m["files"]]
    assert dest.name.endswith("-scheduled.tar.gz")


def test_create_refuses_an_existing_output_and_an_external_postgres(installed, sec, make_settings):
    s, _ = installed
    taken = s.home / "taken.tar.gz"
    taken.write_text("mine")
    with pytest.raises(CommandError, match="already exists"):
        backup.create(s, sec, None, running=True, passphrase=None, output=taken)  # type: ignore[arg-type]
    assert taken.read_text() == "mine"
    with pytest.raises(CommandError, match="embedded PostgreSQL only"):
        backup.create(make_settings(postgres_url="postgresql://u:p@db/x"), sec, None, True, None)  # type: ignore[arg-type]


# ---------------------------------------------------------------- retention and schedule

def test_prune_keeps_the_newest_scheduled_and_every_manual_archive(tmp_path):
    names = [backup.archive_name(T0 + i * 3600, backup.SCHEDULED) for i in range(5)]
    manual = backup.archive_name(T0 - 86400, "manual")
    for n in names + [manual, "airflow-backup-garbage-scheduled.tar.gz"]:
        (tmp_path / n).write_text("x")
    removed = backup.prune(tmp_path, 2)
    assert sorted(p.name for p in removed) == names[:3]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[3:] + [manual, "airflow-backup-garbage-scheduled.tar.gz"])
    assert [t for t, _ in backup.scheduled_archives(tmp_path)] == [T0 + 3 * 3600, T0 + 4 * 3600]


@pytest.mark.parametrize("newest, now, retry_at, due", [
    (None, T0, None, T0),                 # no archive yet: at once
    (T0, T0 + 10, None, T0 + 600),        # one interval after the newest
    (T0, T0 + 9999, None, T0 + 9999),     # overdue (the stack was down): at once, once
    (None, T0, T0 + 300, T0 + 300),       # after a failure: not before the retry time
])
def test_next_due(newest, now, retry_at, due):
    assert backup_schedule.next_due(newest, 600, now, retry_at) == due


def test_schedule_component_only_when_an_interval_is_set(make_settings, sec):
    assert "backup" not in [c.name for c in components.build(make_settings(), sec)]
    s = make_settings(backup_interval_minutes="60")
    comp = components.by_name(components.build(s, sec))["backup"]
    assert comp.priority == components.EDGE and not comp.airflow
    assert comp.run_as == "root"  # its archives hold the metadata database: out of the service user's reach
    env = dict(comp.env)
    # the running stack's settings travel in its env file: the effective settings file is root's
    assert settings.from_json(json.loads(env.pop(settings.SETTINGS_ENV))) == s
    assert env == sec.as_env()  # it archives secrets.env whole
    assert sec.admin_password not in " ".join(comp.argv)


def test_schedule_probe_reads_the_report(tmp_path):
    report = tmp_path / "r.json"
    probe = probes.Probe("backup_schedule", str(report))
    assert probe.check(probes.ProbeContext("", ""))[0] is False  # no report yet
    report.write_text(json.dumps({"last_ok": {"file": "a.tar.gz", "at": "t1"}, "last_error": None, "next_due": "t2"}))
    assert probe.check(probes.ProbeContext("", "")) == (True, "last a.tar.gz at t1; next at t2")
    report.write_text(json.dumps({"last_error": "pg_dump failed", "last_error_at": "t3"}))
    ok, detail = probe.check(probes.ProbeContext("", ""))
    assert not ok and "pg_dump failed" in detail


# ---------------------------------------------------------------- restore's checks and swap

@pytest.mark.parametrize("manifest, match", [
    ({"postgres_major": "14", "airflow_version": "3.3.2"}, "PostgreSQL 14 database; this machine runs PostgreSQL 15"),
    ({"postgres_major": "15", "airflow_version": "3.4.0"}, "newer than"),
])
def test_incompatible_archives_are_refused(manifest, match):
    with pytest.raises(CommandError, match=match):
        restore.check_compatible(manifest, "15")


def test_an_older_airflow_is_accepted_and_migrated_at_start():
    restore.check_compatible({"postgres_major": "15", "airflow_version": "3.2.1"}, "15")


def test_swap_in_replaces_and_removes_the_old(tmp_path):
    tree(tmp_path, {"dags/old.py": b"old", ".dags.restore-new/new.py": b"new", ".s.restore-new": b"S"})
    restore.swap_in([(tmp_path / ".dags.restore-new", tmp_path / "dags"), (tmp_path / ".s.restore-new", tmp_path / "s")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dags", "s"]
    assert [p.name for p in (tmp_path / "dags").iterdir()] == ["new.py"]


def test_swap_in_puts_everything_back_when_a_rename_fails(tmp_path):
    tree(tmp_path, {"dags/old.py": b"old", "secrets.env": b"old secrets", ".dags.restore-new/new.py": b"new"})
    with pytest.raises(OSError):
        restore.swap_in([(tmp_path / ".dags.restore-new", tmp_path / "dags"),
                         (tmp_path / ".secrets.env.restore-new", tmp_path / "secrets.env")])  # the second is missing
    assert (tmp_path / "dags" / "old.py").read_bytes() == b"old"
    assert (tmp_path / "secrets.env").read_bytes() == b"old secrets"
    assert (tmp_path / ".dags.restore-new" / "new.py").exists()
    assert not list(tmp_path.glob("*pre-restore"))


def test_secrets_from_mapping_needs_every_secret(sec):
    assert secrets.from_mapping(sec.as_env()) == sec
    partial = dict(sec.as_env())
    partial.pop("APACHE_AIRFLOW_JWT_SECRET")
    assert secrets.from_mapping(partial) is None


# ---------------------------------------------------------------- the commands' own refusals

def test_no_secrets_and_a_passphrase_file_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["backup", "create", "--no-secrets", "--passphrase-file", "pw"])
    assert exc.value.code == 1 and "not allowed with" in capsys.readouterr().err


def test_list_of_an_empty_home_exits_2_and_json_is_an_empty_list(home, clean_environ, capsys):
    assert cli.main(["backup", "list", "--home", str(home), "--format", "json"]) == 2
    assert json.loads(capsys.readouterr().out) == []


def test_create_in_a_home_never_installed_is_refused(home, clean_environ, capsys):
    assert cli.main(["backup", "create", "--home", str(home), "--no-secrets"]) == 1
    assert "nothing installed" in capsys.readouterr().err
    assert list(home.iterdir()) == []


def test_restore_of_a_missing_archive_names_it(home, clean_environ, capsys):
    assert cli.main(["backup", "restore", str(home / "nope.tar.gz"), "--home", str(home)]) == 1
    assert "nope.tar.gz: no such archive" in capsys.readouterr().err
