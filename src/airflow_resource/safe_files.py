"""Writes, chowns and chmods that never go through a link another user planted.

Root writes into the home, where the service user may own a directory or plant a name. Every call here
walks the path one directory at a time relative to a directory fd, with O_NOFOLLOW: a symlink is followed
only when root (or the caller) made it in a directory nobody else may change (/var/run -> /run), never one
another user made. A file is written under a random name created with O_EXCL|O_NOFOLLOW, checked with
fstat, chowned and chmodded on its fd, then renamed over the target within the same directory fd: a
planted symlink or hard link at the target is replaced as a name, its target never touched. A target that
is a symlink, a FIFO, a device or a hard link (st_nlink > 1) is refused with a message naming it: that is
not something the resource made, and the operator should see it.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from airflow_resource.errors import CommandError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
MAX_HOPS = 40  # symlinks followed in one walk (the kernel's own limit)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "a regular file"


def refuse(path: Path | str, what: str) -> CommandError:
    return CommandError(
        f"{path} is {what}: the resource does not read, write, chown or chmod through it",
        f"someone other than root put it there (a task running as the service user can); inspect it, remove it "
        f"(rm {path}) and run the command again")


def _trusted(dir_st: os.stat_result, link_st: os.stat_result) -> bool:
    """A symlink we may follow: made by root or the caller, in a directory only they can change."""
    me = {0, os.geteuid()}
    dir_private = not dir_st.st_mode & 0o022 or bool(dir_st.st_mode & stat.S_ISVTX)
    return link_st.st_uid in me and dir_st.st_uid in me and dir_private


def open_dir(path: Path | str) -> int:
    """An O_DIRECTORY fd of path, reached one component at a time with O_NOFOLLOW (see the module's doc)."""
    path = os.path.abspath(path)
    parts = [p for p in path.split("/") if p]
    fd = os.open("/", _DIR)
    where, hops = "/", 0
    try:
        while parts:
            name = parts.pop(0)
            if name == ".":
                continue
            try:
                nfd = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                link_st = os.lstat(name, dir_fd=fd)
                if not stat.S_ISLNK(link_st.st_mode):
                    raise refuse(os.path.join(where, name), f"{_kind(link_st.st_mode)}, not a directory") from None
                if not _trusted(os.fstat(fd), link_st) or hops >= MAX_HOPS:
                    raise refuse(os.path.join(where, name), f"a symlink owned by uid {link_st.st_uid}") from None
                hops += 1
                target = os.readlink(name, dir_fd=fd)
                parts = [p for p in target.split("/") if p] + parts
                if target.startswith("/"):
                    os.close(fd)
                    fd, where = os.open("/", _DIR), "/"
                continue
            os.close(fd)
            fd, where = nfd, os.path.join(where, name)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _check_target(dfd: int, name: str, path: Path) -> os.stat_result | None:
    """The existing entry at name, refused unless it is a plain file with one link; None when absent."""
    try:
        st = os.lstat(name, dir_fd=dfd)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise refuse(path, _kind(st.st_mode))
    if st.st_nlink > 1:
        raise refuse(path, f"a hard link ({st.st_nlink} names for one file)")
    return st


def write_file(path: Path | str, data: bytes | str, mode: int = 0o600, uid: int = -1, gid: int = -1) -> None:
    """Replace path's content atomically: a fresh file, private from its first byte, renamed over it."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    dfd = open_dir(path.parent)
    try:
        _check_target(dfd, path.name, path)
        tmp = f".{path.name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                raise refuse(path.parent / tmp, _kind(st.st_mode))
            if uid != -1 or gid != -1:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)  # after fchown, which clears set-id bits
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp, dir_fd=dfd)
            raise
        os.close(fd)
        os.rename(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
    finally:
        os.close(dfd)


def ensure_dir(path: Path | str, mode: int, uid: int = -1, gid: int = -1, parents: bool = True) -> int | None:
    """Make path a directory with this mode and owner (created or repaired, through its own fd). Returns
    the owner it had (None: just created). A symlink or non-directory there is refused."""
    path = Path(path)
    if parents and not os.path.lexists(path.parent):
        ensure_dir(path.parent, 0o755)
    dfd = open_dir(path.parent)
    try:
        created = False
        try:
            os.mkdir(path.name, 0o700, dir_fd=dfd)
            created = True
        except FileExistsError:
            pass
        try:
            fd = os.open(path.name, _DIR | os.O_NOFOLLOW, dir_fd=dfd)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            raise refuse(path, _kind(os.lstat(path.name, dir_fd=dfd).st_mode)) from None
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        _fix(fd, st, mode, uid, gid)
        return None if created else st.st_uid
    finally:
        os.close(fd)


def _fix(fd: int, st: os.stat_result, mode: int | None, uid: int, gid: int) -> None:
    if (uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid):
        os.fchown(fd, uid, gid)
    if mode is not None and stat.S_IMODE(os.fstat(fd).st_mode) != mode:
        os.fchmod(fd, mode)


def set_owner(path: Path | str, uid: int = -1, gid: int = -1, mode: int | None = None) -> None:
    """chown/chmod a file or directory that must not be a link of any kind (fchown/fchmod on its fd)."""
    path = Path(path)
    dfd = open_dir(path.parent)
    try:
        st = os.lstat(path.name, dir_fd=dfd)
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(path.name, _DIR | os.O_NOFOLLOW, dir_fd=dfd)
        else:
            _check_target(dfd, path.name, path)
            fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)) or (stat.S_ISREG(st.st_mode) and st.st_nlink > 1):
            raise refuse(path, _kind(st.st_mode))
        _fix(fd, st, mode, uid, gid)
    finally:
        os.close(fd)


def chown_tree(path: Path | str, uid: int, gid: int, mode: int | None = None,
               below: tuple[int, int] | None = None) -> None:
    """chown -R that cannot be turned on a file outside the tree: the top first (so whoever owned it can no
    longer change what is below), then every entry through its directory fd, symlinks as links (never
    their targets); a hard-linked file (st_nlink > 1) is refused, since its other name may be anywhere.
    mode: the top's; below: (folders' mode, regular files' mode) for everything under it, or left alone."""
    set_owner(path, uid, gid, mode)
    fd = open_dir(path)
    try:
        _chown_below(fd, Path(path), uid, gid, below)
    finally:
        os.close(fd)


def _chown_below(dfd: int, where: Path, uid: int, gid: int, below: tuple[int, int] | None) -> None:
    for entry in os.scandir(dfd):
        st = os.lstat(entry.name, dir_fd=dfd)
        if stat.S_ISDIR(st.st_mode):
            sub = os.open(entry.name, _DIR | os.O_NOFOLLOW, dir_fd=dfd)
            try:
                _fix(sub, st, below[0] if below else None, uid, gid)
                _chown_below(sub, where / entry.name, uid, gid, below)
            finally:
                os.close(sub)
            continue
        if stat.S_ISLNK(st.st_mode):
            os.chown(entry.name, uid, gid, dir_fd=dfd, follow_symlinks=False)
            continue
        if st.st_nlink > 1:
            raise refuse(where / entry.name, f"a hard link ({st.st_nlink} names for one file)")
        if not stat.S_ISREG(st.st_mode) or not below:
            os.chown(entry.name, uid, gid, dir_fd=dfd, follow_symlinks=False)
            continue
        fd = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
        try:
            _fix(fd, os.fstat(fd), below[1], uid, gid)
        finally:
            os.close(fd)


def open_plain(path: Path | str) -> int:
    """A file root reads from a directory another user may write, opened without following a link and
    without blocking: a symlink, a FIFO (whose read would hang) or a device is refused. A blocking fd."""
    path = Path(path)
    dfd = open_dir(path.parent)
    try:
        try:
            fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise refuse(path, "a symlink") from None
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise refuse(path, _kind(st.st_mode))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_file(path: Path | str, max_bytes: int) -> bytes:
    """A small file root reads from a directory another user may write: a plain file, at most max_bytes."""
    fd = open_plain(path)
    try:
        st = os.fstat(fd)
        data = os.read(fd, max_bytes + 1)
        if st.st_size > max_bytes or len(data) > max_bytes:
            raise CommandError(f"{path} is larger than the {max_bytes} bytes it may have",
                               f"inspect it, remove it (rm {path}) and run the command again")
        return data
    finally:
        os.close(fd)


def remove(path: Path | str) -> None:
    """Unlink a name (never what a symlink points to); absent is fine."""
    path = Path(path)
    dfd = open_dir(path.parent)
    try:
        os.unlink(path.name, dir_fd=dfd)
    except FileNotFoundError:
        pass
    finally:
        os.close(dfd)
