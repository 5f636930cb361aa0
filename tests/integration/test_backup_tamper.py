"""Tampered archives on the real stack: a manifest edited to match a changed member, a member swapped, a
member longer than declared, the tag stripped, and an authentic archive whose resource.toml changes the
service user and the venv. Each restore is refused with a message naming what is wrong, and nothing in
the home changes (every path's owner, mode and content, compared before and after). Then the untouched
archive restores, so the refusals are not a restore that never works.

The archives are tampered with the project's own format code where a forger would need it (gzip/tar, and
auth.sign with the passphrase for the archive a passphrase holder made).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from airflow_resource.audit import trail
from airflow_resource.backup import archive, auth
from tests.archives import rebuild
from tests.conftest import make_home, processes_of, start_stack, stop_and_remove

pytestmark = pytest.mark.integration

PASSPHRASE = "tamper test passphrase, not a secret"
DAG = "dags/example_bash.py"
EVIL_DAG = b"import os\nos.system('id > /tmp/owned')\n"
EVIL_TOML = b'service_user = "root"\nvenv = "/tmp/attacker-venv"\n'


@pytest.fixture(scope="module")
def made():
    """A stack, one authentic archive of it (with a passphrase), then the stack stopped: a restore needs that."""
    stack = start_stack("af-bk-tamper-")
    folder = make_home("af-bk-tamper-files-")
    passfile = folder / "passphrase"
    passfile.write_text(PASSPHRASE + "\n")
    passfile.chmod(0o600)
    try:
        (stack.home / "resource.toml").write_text("log_retention_days = 30\n")  # the default: the archive has one
        proc = stack.cli("backup", "create", "--passphrase-file", str(passfile), timeout=600)
        assert proc.returncode == 0, proc.stderr
        good = Path(proc.stdout.strip().splitlines()[-1])
        assert stack.cli("manage", "stop", timeout=180).returncode == 0
        yield stack, good, passfile, folder
    finally:
        stop_and_remove(stack)
        shutil.rmtree(folder, ignore_errors=True)


def snapshot(home: Path) -> dict[str, tuple]:
    """Every path under the home, not following links: type, owner, group, mode, and content hash or link target."""
    found = {}
    for root, dirs, files in os.walk(home):
        for name in dirs + files:
            path = Path(root) / name
            st = path.lstat()
            what = (os.readlink(path) if stat.S_ISLNK(st.st_mode)
                    else hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else None)
            found[str(path.relative_to(home))] = (stat.S_IFMT(st.st_mode), st.st_uid, st.st_gid,
                                                   stat.S_IMODE(st.st_mode), what)
    st = home.lstat()
    found["."] = (stat.S_IFMT(st.st_mode), st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), None)
    return found


def listed_as(name: str, data: bytes):
    def edit(m: dict) -> None:
        entry = next(e for e in m["files"] if e["path"] == name)
        entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    return edit


def refused(stack, path: Path, passfile: Path, expect: str, *extra: str) -> str:
    """Refused with the home exactly as it was, but for the audit trail: the stack is stopped, so the
    refusal's record waits in run/audit-pending.jsonl for the next start (audit/trail.py)."""
    pending = stack.home / "run" / trail.PENDING_FILE
    kept = pending.read_text().splitlines() if pending.exists() else []
    before = snapshot(stack.home)
    proc = stack.cli("backup", "restore", str(path), "--force", "--passphrase-file", str(passfile), *extra,
                     timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert expect in proc.stderr and "nothing was changed" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    after = snapshot(stack.home)
    for state in (before, after):
        state.pop(str(pending.relative_to(stack.home)), None)
    assert after == before
    [record] = pending.read_text().splitlines()[len(kept):]
    assert json.loads(record)["event"] == trail.BACKUP_RESTORE
    assert json.loads(json.loads(record)["extra"])["outcome"] == "refused"
    assert processes_of(stack.home) == []
    return proc.stdout + proc.stderr


def test_the_archive_carries_both_tags_and_list_shows_them(made):
    stack, good, _passfile, _folder = made
    assert auth.described(archive.read_manifest(good)) == "passphrase+home"
    proc = stack.cli("backup", "list", "--format", "json", timeout=60)
    row = next(r for r in json.loads(proc.stdout) if r["file"] == str(good))
    assert row["authenticated_by"] == "passphrase+home"


def test_a_manifest_edited_to_match_a_changed_member_is_refused(made):
    stack, good, passfile, folder = made
    forged = rebuild(good, folder / "forged.tar.gz", manifest_edit=listed_as(DAG, EVIL_DAG), members={DAG: EVIL_DAG})
    refused(stack, forged, passfile, "was altered after it was made")
    # A changed field alone (the PostgreSQL major a restore checks) is the same refusal, not "PostgreSQL 14".
    edited = rebuild(good, folder / "pg14.tar.gz", manifest_edit=lambda m: m.update(postgres_major="14"))
    refused(stack, edited, passfile, "was altered after it was made")


def test_a_swapped_member_is_refused(made):
    stack, good, passfile, folder = made
    size = next(e["size"] for e in archive.read_manifest(good)["files"] if e["path"] == DAG)
    same_size = (b"# swapped " * size)[:size]
    swapped = rebuild(good, folder / "swapped.tar.gz", members={DAG: same_size})
    refused(stack, swapped, passfile, f"checksum mismatch in {DAG}")


def test_a_member_longer_than_declared_is_refused(made):
    stack, good, passfile, folder = made
    longer = rebuild(good, folder / "longer.tar.gz", members={DAG: b"#" * (8 << 20)})
    refused(stack, longer, passfile, f"member {DAG} is {8 << 20} bytes; its manifest declares")


def test_a_stripped_tag_is_refused_unless_explicitly_allowed(made):
    stack, good, passfile, folder = made
    stripped = rebuild(good, folder / "stripped.tar.gz", manifest_edit=lambda m: m.pop("auth"))
    text = refused(stack, stripped, passfile, "cannot be authenticated")
    assert "--allow-unauthenticated" in text


def test_a_resource_toml_changing_the_service_user_and_venv_is_refused(made):
    """Authentic (signed with the passphrase, as a holder of it could): only the settings guard stops it."""
    stack, good, passfile, folder = made

    def resign(m: dict) -> None:
        listed_as("config/resource.toml", EVIL_TOML)(m)
        m.pop("auth")
        m["auth"] = auth.sign(m, PASSPHRASE, None, archive.SCRYPT)

    path = rebuild(good, folder / "settings.tar.gz", manifest_edit=resign,
                   members={"config/resource.toml": EVIL_TOML})
    text = refused(stack, path, passfile, "changes 2 setting(s) that name a path, a user or a program")
    assert "service_user airflow -> root" in text and "venv" in text and "/tmp/attacker-venv" in text
    assert "--accept-settings" in text


def test_the_untouched_archive_restores_authenticated_by_the_home(made):
    stack, good, passfile, _folder = made
    proc = stack.cli("backup", "restore", str(good), "--force", "--passphrase-file", str(passfile), timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "authenticated by: home" in proc.stderr
    assert not list(stack.home.glob(".*restore*")) and processes_of(stack.home) == []
