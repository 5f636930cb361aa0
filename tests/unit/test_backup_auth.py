"""Authenticated backups without a stack: the manifest's tag (passphrase and home keys), extraction capped at
each member's declared size, and the guard on the archive's resource.toml; then restore() itself refusing a
tampered archive before it touches the home (pg_dump faked, no PostgreSQL started)."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from airflow_resource.backup import archive, auth, settings_guard
from airflow_resource.backup import create as backup
from airflow_resource.backup import restore
from airflow_resource.config import secrets
from airflow_resource.errors import CommandError
from tests.archives import rebuild

pytestmark = pytest.mark.unit

T0 = 1_764_000_000.0
FAST = {"n": 2**4, "r": 8, "p": 1}  # scrypt parameters for tests: the format is the same, the cost is not
HOME_SECRET = "home-secret-Zx81"


def signed(passphrase: str | None = "pp", home_secret: str | None = HOME_SECRET) -> dict:
    m = {"format": archive.FORMAT, "created_unix": T0, "postgres_major": "15",
         "files": [{"path": "dags/a.py", "size": 3, "sha256": "0" * 64}]}
    m[auth.AUTH] = auth.sign(m, passphrase, home_secret, FAST)
    return m


# ---------------------------------------------------------------- the tag

def test_both_keys_vouch_for_an_untouched_manifest(tmp_path):
    m = signed()
    assert auth.verify(tmp_path / "a", m, "pp", HOME_SECRET) == "home"  # the home key first: no task reads it
    assert auth.verify(tmp_path / "a", m, "pp", None) == "passphrase"  # a fresh home: the passphrase
    assert auth.verify(tmp_path / "a", m, "pp", "another home") == "passphrase"
    assert auth.described(m) == "passphrase+home"


@pytest.mark.parametrize("edit", [
    lambda m: m.update(postgres_major="14"),
    lambda m: m["files"][0].update(sha256="1" * 64),    # a member swapped, its checksum updated to match
    lambda m: m["files"][0].update(size=4),
    lambda m: m["files"].append({"path": "plugins/evil.py", "size": 1, "sha256": "2" * 64}),
], ids=["field", "checksum", "size", "extra-file"])
@pytest.mark.parametrize("keys", [("pp", HOME_SECRET), ("pp", None), (None, HOME_SECRET)], ids=["home", "passphrase", "home-only"])
def test_an_edited_manifest_is_refused_as_tampered(tmp_path, edit, keys):
    m = signed()
    edit(m)
    with pytest.raises(CommandError, match="altered after it was made") as exc:
        auth.verify(tmp_path / "a", m, *keys)
    assert "nothing was changed" in exc.value.hint


def test_a_wrong_passphrase_is_told_apart_from_tampering(tmp_path):
    m = signed()
    with pytest.raises(CommandError, match="wrong passphrase"):
        auth.verify(tmp_path / "a", m, "not it", None)
    with pytest.raises(CommandError, match="wrong passphrase"):  # named before extraction, even when the home vouches
        auth.verify(tmp_path / "a", m, "not it", HOME_SECRET)
    with pytest.raises(CommandError, match="authenticated with its passphrase: none given"):
        auth.verify(tmp_path / "a", m, None, None)


def test_an_archive_without_a_tag_needs_the_explicit_flag(tmp_path, capsys):
    m = signed()
    del m[auth.AUTH]
    with pytest.raises(CommandError, match="cannot be authenticated") as exc:
        auth.verify(tmp_path / "a", m, "pp", HOME_SECRET)
    assert auth.ALLOW_FLAG in exc.value.hint
    assert auth.verify(tmp_path / "a", m, "pp", HOME_SECRET, allow_unauthenticated=True) == "none"
    assert "NOT authenticated" in capsys.readouterr().err


def test_another_homes_archive_without_a_passphrase_is_refused_not_called_tampered(tmp_path):
    m = signed(passphrase=None)
    with pytest.raises(CommandError, match="only the secrets of the home that made it"):
        auth.verify(tmp_path / "a", m, None, "another home")
    assert auth.verify(tmp_path / "a", m, None, "another home", allow_unauthenticated=True) == "none"


def test_a_removed_home_block_falls_back_to_the_passphrase_and_an_invalid_block_is_tampered(tmp_path):
    m = signed()
    del m[auth.AUTH]["home"]
    assert auth.verify(tmp_path / "a", m, "pp", HOME_SECRET) == "passphrase"
    m[auth.AUTH]["passphrase"]["n"] = 2**40  # a crafted KDF cost is refused, not computed
    with pytest.raises(CommandError, match="altered"):
        auth.verify(tmp_path / "a", m, "pp", None)
    m[auth.AUTH] = "garbage"
    with pytest.raises(CommandError, match="altered"):
        auth.verify(tmp_path / "a", m, "pp", None)


def test_the_tag_key_is_not_the_secrets_key_and_each_signature_has_its_own_salt():
    a, b = signed()[auth.AUTH]["passphrase"], signed()[auth.AUTH]["passphrase"]
    assert a["salt"] != b["salt"] and a["tag"] != b["tag"]
    token, params = archive.encrypt(b"x", "pp")
    assert auth.passphrase_key("pp", params) != archive._key("pp", __import__("base64").b64decode(params["salt"]), params)


# ---------------------------------------------------------------- capped extraction

def write_archive(tmp_path: Path, files: dict[str, bytes]) -> tuple[Path, dict]:
    root = tmp_path / "src"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    m = {"format": archive.FORMAT, "created_unix": T0, "files": archive.file_entries(root)}
    m[auth.AUTH] = auth.sign(m, None, HOME_SECRET, FAST)
    dest = tmp_path / "a.tar.gz"
    archive.write(dest, m, root)
    return dest, m


def swap_member(src: Path, dst: Path, name: str, data: bytes, header_size: int | None = None) -> Path:
    """The archive with one member's bytes replaced; the manifest (and its tag) untouched."""
    with tarfile.open(src, "r:gz") as tin, tarfile.open(dst, "w:gz") as tout:
        for m in tin.getmembers():
            body = tin.extractfile(m).read()
            if m.name == name:
                body = data
                m.size = len(data) if header_size is None else header_size
            tout.addfile(m, io.BytesIO(body))
    return dst


def test_a_member_longer_than_declared_is_refused_before_a_byte_is_written(tmp_path):
    src, m = write_archive(tmp_path, {"dags/a.py": b"abc", "database/airflow.dump": b"D" * 1000})
    bad = swap_member(src, tmp_path / "long.tar.gz", "dags/a.py", b"abc" + b"X" * 10_000_000)
    with pytest.raises(CommandError, match="dags/a.py is 10000003 bytes; its manifest declares 3"):
        archive.extract_verified(bad, tmp_path / "x", m)
    assert not (tmp_path / "x" / "dags" / "a.py").exists()


def test_the_copy_stops_one_byte_past_the_declared_size_and_removes_the_partial_file(tmp_path):
    target = tmp_path / "out"
    src = io.BytesIO(b"Y" * (5 * archive.CHUNK))  # a reader that gives more than the header said
    with pytest.raises(CommandError, match="longer than the 10 bytes"):
        archive._copy_capped(tmp_path / "a", "m", src, target, {"size": 10, "sha256": "0" * 64})
    assert not target.exists() and src.tell() == 11  # read no further than one byte past the cap


def test_a_swapped_member_of_the_same_size_fails_its_checksum_and_leaves_no_file(tmp_path):
    src, m = write_archive(tmp_path, {"dags/a.py": b"abc", "plugins/p.py": b"ok"})
    bad = swap_member(src, tmp_path / "swapped.tar.gz", "dags/a.py", b"xyz")
    with pytest.raises(CommandError, match="checksum mismatch in dags/a.py"):
        archive.extract_verified(bad, tmp_path / "x", m)
    assert not (tmp_path / "x" / "dags" / "a.py").exists()


def test_an_archive_replaced_after_its_manifest_was_checked_is_refused(tmp_path):
    src, m = write_archive(tmp_path, {"dags/a.py": b"abc"})
    other = copy.deepcopy(m)
    other["created_unix"] = T0 + 1
    with pytest.raises(CommandError, match="not the one that was checked"):
        archive.extract_verified(src, tmp_path / "x", other)
    with pytest.raises(CommandError, match="not the one that was checked"):
        archive.read_member(src, "dags/a.py", other)
    assert archive.read_member(src, "dags/a.py", m) == b"abc"


@pytest.mark.parametrize("kind", [tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.FIFOTYPE])
def test_link_and_special_members_are_refused_even_under_a_listed_name(tmp_path, kind):
    src, m = write_archive(tmp_path, {"dags/a.py": b"abc"})
    bad = tmp_path / "link.tar.gz"
    with tarfile.open(src, "r:gz") as tin, tarfile.open(bad, "w:gz") as tout:
        first = tin.next()
        tout.addfile(first, tin.extractfile(first))
        info = tarfile.TarInfo("dags/a.py")
        info.type, info.linkname = kind, "/etc/passwd"
        tout.addfile(info)
    with pytest.raises(CommandError, match="unexpected member 'dags/a.py'"):
        archive.extract_verified(bad, tmp_path / "x", m)


@pytest.mark.parametrize("path", ["../x", "dags/../../x", "/etc/passwd", "dags/./a.py", "dags//a.py", "manifest.json"])
def test_a_manifest_entry_with_an_unsafe_path_is_refused(tmp_path, path):
    src, m = write_archive(tmp_path, {"dags/a.py": b"abc"})
    with pytest.raises(CommandError, match="unusable entry"):
        archive._check_entries(src, [{"path": path, "size": 1, "sha256": "0" * 64}])


# ---------------------------------------------------------------- the archive's resource.toml

def test_the_guarded_settings_come_from_the_settings_table():
    names = settings_guard.guarded()
    for name in ("home", "venv", "dags_dir", "service_user", "admin_user", "postgres_url", "redis_url",
                 "backup_passphrase_file", "alert_webhook_url", "api_host"):
        assert name in names
    assert "api_port" not in names and "workers" not in names


def test_changes_show_paths_users_and_airflow_options_with_credentials_masked(home):
    current = home / "resource.toml"
    current.write_text('workers = 2\n[airflow.core]\nparallelism = 8\n')
    archived = (b'workers = 5\nservice_user = "root"\nvenv = "/tmp/evil-venv"\n'
                b'postgres_url = "postgresql://u:hunter2@evil:5432/x"\nalert_webhook_url = "https://evil/hook"\n'
                b'[airflow.core]\nparallelism = 8\nexecutor = "my.Executor"\n')
    rows = {r["setting"]: r for r in settings_guard.changes(home, current, archived)}
    assert set(rows) == {"service_user", "venv", "postgres_url", "alert_webhook_url", "AIRFLOW__CORE__EXECUTOR"}
    assert rows["service_user"] == {"setting": "service_user", "current": "airflow", "archive": "root"}
    assert rows["venv"]["current"] == str(home / "venv") and rows["venv"]["archive"] == "/tmp/evil-venv"
    assert "hunter2" not in json.dumps(rows) and rows["alert_webhook_url"]["archive"] == "********"
    assert settings_guard.changes(home, current, None) == []  # no resource.toml in the archive: the home keeps its own
    assert settings_guard.changes(home, current, current.read_bytes()) == []


def test_an_unusable_archived_resource_toml_is_refused(home):
    for text, match in ((b'home = "/elsewhere"\n', "sets home"), (b"nonsense = 1\n", "unknown setting"),
                        (b"[[[", "not valid TOML")):
        with pytest.raises(CommandError, match=match):
            settings_guard.changes(home, home / "resource.toml", text)


def test_check_refuses_unless_accepted_and_shows_the_table(capsys):
    rows = [{"setting": "service_user", "current": "airflow", "archive": "root"}]
    with pytest.raises(CommandError, match="service_user airflow -> root") as exc:
        settings_guard.check(rows, accept=False)
    assert settings_guard.ACCEPT_FLAG in exc.value.hint
    assert "service_user" in capsys.readouterr().out
    settings_guard.check(rows, accept=True)
    assert "with --accept-settings" in capsys.readouterr().err
    settings_guard.check([], accept=False)


# ---------------------------------------------------------------- restore() refuses before it changes anything

@pytest.fixture
def made(make_settings, home, monkeypatch, sec):
    """A home with secrets.env and an archive of it (pg_dump faked)."""
    s = make_settings()
    for name, data in {"postgres/PG_VERSION": b"15\n", "dags/etl.py": b"# dag\n", "resource.toml": b"workers = 2\n"}.items():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_bytes(data)
    secrets.write_private(s.secrets_file, secrets.render_env_file(sec))
    s.backups_dir.mkdir()
    monkeypatch.setattr(backup.pgdump, "dump", lambda port, sec, db, out: out.write_bytes(b"PGDMP"))
    monkeypatch.setattr(archive, "SCRYPT", FAST)
    monkeypatch.setattr(restore, "check_compatible", lambda *a: None)
    monkeypatch.setattr(restore.datastores, "is_initialised", lambda s: False)
    # No apt-get or useradd from a unit test: the refusals come before or without them.
    monkeypatch.setattr(restore.system, "install_packages", lambda *a: None)
    monkeypatch.setattr(restore.system, "ensure_service_user", lambda *a: restore.system.current_user())
    dest, m = backup.create(s, sec, None, running=True, passphrase="pp")  # type: ignore[arg-type]
    return s, dest, m


def listing(root: Path) -> dict[str, tuple]:
    return {str(p.relative_to(root)): (p.stat().st_mode, p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*")) if p.name != "pf"}


def test_restore_refuses_tampered_archives_and_leaves_the_home_as_it_was(made, tmp_path, monkeypatch):
    s, dest, m = made
    pf = tmp_path / "pf"
    pf.write_text("pp\n")
    evil_toml = b'service_user = "root"\nvenv = "/tmp/evil"\n'

    def fix_toml_entry(m):  # the manifest rewritten to match the new resource.toml: only the tag notices
        entry = next(e for e in m["files"] if e["path"] == "config/resource.toml")
        entry.update(size=len(evil_toml), sha256=hashlib.sha256(evil_toml).hexdigest())

    cases = {
        "manifest edited": (rebuild(dest, tmp_path / "m.tar.gz", manifest_edit=fix_toml_entry,
                                    members={"config/resource.toml": evil_toml}), "altered after it was made"),
        "member swapped": (rebuild(dest, tmp_path / "s.tar.gz", members={"dags/etl.py": b"# evi\n"}),
                           "checksum mismatch in dags/etl.py"),
        "member longer": (rebuild(dest, tmp_path / "l.tar.gz", members={"dags/etl.py": b"# evil\n"}),
                          "member dags/etl.py is 7 bytes; its manifest declares 6"),
        "tag stripped": (rebuild(dest, tmp_path / "t.tar.gz", manifest_edit=lambda m: m.pop("auth")),
                         "cannot be authenticated"),
    }
    before = listing(s.home)
    for name, (path, expect) in cases.items():
        with pytest.raises(CommandError, match=expect):
            restore.restore(s, path, pf, force=True)
        assert listing(s.home) == before, name


def test_restore_refuses_an_authentic_archive_that_changes_the_service_user(made, tmp_path, sec, monkeypatch):
    s, _dest, _m = made
    (s.home / "resource.toml").write_text('service_user = "someone"\n')
    other, _ = backup.create(s, sec, None, running=True, passphrase="pp",  # type: ignore[arg-type]
                             output=tmp_path / "other.tar.gz")
    (s.home / "resource.toml").write_text("workers = 2\n")
    pf = tmp_path / "pf"
    pf.write_text("pp\n")
    before = listing(s.home)
    with pytest.raises(CommandError, match="service_user airflow -> someone"):
        restore.restore(s, other, pf, force=True)
    assert listing(s.home) == before
    assert not list(s.home.glob(".restore*"))
