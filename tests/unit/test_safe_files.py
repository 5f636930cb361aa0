"""safe_files, for real on this file system: what another user plants at a name root writes (a symlink, a hard
link, a FIFO, an oversized file, a symlinked directory on the way) is refused or replaced as a name, and the
file it points to keeps its owner, mode and content."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from airflow_resource import safe_files
from airflow_resource.errors import CommandError

pytestmark = pytest.mark.unit

OTHER = 65534  # nobody: "another user" (the service user, in the stack)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="planting as another user needs root")


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim"
    v.write_text("precious\n")
    v.chmod(0o644)
    return v


def fingerprint(p: Path) -> tuple[int, int, int, str]:
    st = p.stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), p.read_text()


def plant_symlink(target: Path, at: Path, uid: int = OTHER) -> None:
    at.symlink_to(target)
    if os.geteuid() == 0:
        os.lchown(at, uid, uid)


def test_write_file_writes_with_mode_and_owner(tmp_path):
    path = tmp_path / "conf"
    safe_files.write_file(path, "a\n", 0o640, os.geteuid(), os.getegid())
    assert path.read_text() == "a\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    safe_files.write_file(path, b"b\n", 0o600)
    assert path.read_text() == "b\n" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["conf"]  # no temporary file left behind


def test_symlink_at_the_target_is_refused_and_its_target_untouched(tmp_path, victim):
    before = fingerprint(victim)
    plant_symlink(victim, tmp_path / "conf")
    with pytest.raises(CommandError) as exc:
        safe_files.write_file(tmp_path / "conf", "evil\n", 0o600, 0, 0)
    assert "is a symlink" in exc.value.message and str(tmp_path / "conf") in exc.value.message
    assert "rm " in exc.value.hint
    assert fingerprint(victim) == before


def test_hard_link_at_the_target_is_refused(tmp_path, victim):
    before = fingerprint(victim)
    os.link(victim, tmp_path / "conf")
    with pytest.raises(CommandError, match="hard link"):
        safe_files.write_file(tmp_path / "conf", "evil\n", 0o600, 0, 0)
    with pytest.raises(CommandError, match="hard link"):
        safe_files.set_owner(tmp_path / "conf", OTHER, OTHER, 0o666)
    assert fingerprint(victim) == before


def test_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "conf")
    done: list[BaseException] = []

    def attempt() -> None:
        for call in (lambda: safe_files.write_file(tmp_path / "conf", "x", 0o600),
                     lambda: safe_files.read_file(tmp_path / "conf", 100),
                     lambda: safe_files.set_owner(tmp_path / "conf", mode=0o600)):
            try:
                call()
            except CommandError as exc:
                done.append(exc)

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "opening the FIFO blocked"
    assert len(done) == 3 and all("FIFO" in e.message for e in done)


def test_oversized_file_is_refused(tmp_path):
    (tmp_path / "status.json").write_bytes(b"x" * 5000)
    with pytest.raises(CommandError, match="larger than the 4096 bytes"):
        safe_files.read_file(tmp_path / "status.json", 4096)
    assert safe_files.read_file(tmp_path / "status.json", 5000) == b"x" * 5000


@needs_root
def test_symlinked_directory_planted_by_another_user_is_refused(tmp_path, victim):
    """run/env -> /somewhere: the issue's second link. Neither mkdir/chmod/chown nor a write goes through it."""
    owned = tmp_path / "run"
    owned.mkdir()
    os.chown(owned, OTHER, OTHER)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    plant_symlink(elsewhere, owned / "env")
    with pytest.raises(CommandError, match="is a symlink"):
        safe_files.ensure_dir(owned / "env", 0o700, OTHER, OTHER)
    with pytest.raises(CommandError, match="is a symlink"):
        safe_files.write_file(owned / "env" / "worker.json", "{}", 0o600, OTHER, OTHER)
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o755 and elsewhere.stat().st_uid == 0
    assert list(elsewhere.iterdir()) == []


@needs_root
def test_a_symlink_root_made_in_its_own_directory_is_followed(tmp_path):
    """/var/run -> /run: links root made where only root writes are part of ordinary paths."""
    real = tmp_path / "real"
    real.mkdir()
    tmp_path.chmod(0o755)
    (tmp_path / "alias").symlink_to(real)
    safe_files.write_file(tmp_path / "alias" / "f", "ok", 0o600)
    assert (real / "f").read_text() == "ok"


def test_ensure_dir_creates_and_repairs_mode_and_reports_the_old_owner(tmp_path):
    d = tmp_path / "a" / "b"
    assert safe_files.ensure_dir(d, 0o750) is None
    assert stat.S_IMODE(d.stat().st_mode) == 0o750
    d.chmod(0o777)
    assert safe_files.ensure_dir(d, 0o1770) == os.geteuid()
    assert stat.S_IMODE(d.stat().st_mode) == 0o1770
    (tmp_path / "file").write_text("")
    with pytest.raises(CommandError, match="a regular file"):
        safe_files.ensure_dir(tmp_path / "file", 0o700)


@needs_root
def test_chown_tree_changes_links_not_their_targets_and_refuses_hard_links(tmp_path, victim):
    before = fingerprint(victim)
    tree = tmp_path / "postgres"
    (tree / "base").mkdir(parents=True)
    (tree / "base" / "1").write_text("data")
    plant_symlink(victim, tree / "base" / "link")
    safe_files.chown_tree(tree, OTHER, OTHER, 0o700)
    assert (tree / "base" / "1").stat().st_uid == OTHER and tree.stat().st_uid == OTHER
    assert os.lstat(tree / "base" / "link").st_uid == OTHER
    assert stat.S_IMODE(tree.stat().st_mode) == 0o700
    assert fingerprint(victim) == before
    os.link(victim, tree / "base" / "hard")
    with pytest.raises(CommandError, match="hard link"):
        safe_files.chown_tree(tree, 0, 0)
    assert fingerprint(victim) == before


@needs_root
def test_chown_tree_below_sets_folder_and_file_modes_but_not_through_links(tmp_path, victim):
    before = fingerprint(victim)
    tree = tmp_path / "dags"
    (tree / "sub").mkdir(parents=True, mode=0o700)
    (tree / "a.py").write_text("x")
    (tree / "a.py").chmod(0o600)
    (tree / "sub" / "b.py").write_text("y")
    (tree / "sub" / "b.py").chmod(0o600)
    plant_symlink(victim, tree / "link")
    safe_files.chown_tree(tree, 0, OTHER, 0o750, below=(0o750, 0o640))
    assert [stat.S_IMODE(p.stat().st_mode) for p in (tree, tree / "sub", tree / "a.py", tree / "sub" / "b.py")] == \
        [0o750, 0o750, 0o640, 0o640]
    assert (tree / "sub" / "b.py").stat().st_gid == OTHER
    assert fingerprint(victim) == before


def test_remove_unlinks_the_name_only(tmp_path, victim):
    plant_symlink(victim, tmp_path / "plugin.py")
    safe_files.remove(tmp_path / "plugin.py")
    safe_files.remove(tmp_path / "plugin.py")  # absent is fine
    assert not os.path.lexists(tmp_path / "plugin.py") and victim.read_text() == "precious\n"
