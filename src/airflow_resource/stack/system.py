"""The machine: the service user, system binaries, free ports, system packages."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_resource import printer
from airflow_resource import safe_files
from airflow_resource.errors import CommandError

# Debian/Ubuntu packages that give the embedded servers.
APT_PACKAGES = ("postgresql", "redis-server")
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"  # Debian keeps initdb/postgres off PATH


@dataclass(frozen=True)
class RunAs:
    """Who the components run as: the service user under root, else the caller."""

    name: str
    uid: int
    gid: int
    home: str

    @property
    def is_caller(self) -> bool:
        return self.uid == os.geteuid()

    def popen_kwargs(self) -> dict[str, Any]:
        """subprocess arguments that run a child as this account: only root switches users (and drops
        root's supplementary groups); anyone else runs the child as themselves."""
        if not is_root() or self.is_caller:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def is_root() -> bool:
    return os.geteuid() == 0


def current_user() -> RunAs:
    pw = pwd.getpwuid(os.geteuid())
    return RunAs(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)


def run_as(service_user: str) -> RunAs:
    """The account the components run as; under root it must exist (install creates it)."""
    if not is_root():
        return current_user()
    try:
        pw = pwd.getpwnam(service_user)
    except KeyError:
        raise CommandError(
            f"service user {service_user!r} does not exist",
            "run `./cli.sh manage install` (as root it creates the user)",
        ) from None
    if pw.pw_uid == 0:
        raise CommandError(f"service user {service_user!r} is root; PostgreSQL refuses to run as root",
                           "set APACHE_AIRFLOW_SERVICE_USER to an unprivileged user")
    return RunAs(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)


def ensure_service_user(name: str, home: Path) -> RunAs:
    """Create the unprivileged system user the components run as (root only)."""
    if not is_root():
        return current_user()
    _useradd(name, home, ["--user-group"])
    return run_as(name)


def ensure_data_user(name: str, service: RunAs, home: Path) -> RunAs:
    """The system user PostgreSQL and Redis run as (root only). Its primary group is the service user's, so
    it can pass through the home (0750 root:<that group>); its data directories are 0700, out of every task's
    reach."""
    if not is_root():
        return current_user()
    if name == service.name:
        raise CommandError(f"the data user {name!r} is the service user: every task could read the databases' files",
                           "set APACHE_AIRFLOW_DATA_USER to another name (default airflow-data)")
    _useradd(name, home, ["--gid", str(service.gid)])
    return run_as(name)


def _useradd(name: str, home: Path, group_args: list[str]) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        printer.step(f"creating system user {name}")
        nologin = shutil.which("nologin") or "/usr/sbin/nologin"
        subprocess.run(["useradd", "--system", *group_args, "--home-dir", str(home), "--no-create-home",
                        "--shell", nologin, name], check=True, capture_output=True, text=True)


def pg_bindir() -> Path | None:
    """Directory with initdb and postgres: Debian's versioned dir (newest first), else PATH."""
    for d in sorted(glob.glob(PG_BIN_GLOB), key=lambda p: _version_key(p), reverse=True):
        if os.access(os.path.join(d, "initdb"), os.X_OK) and os.access(os.path.join(d, "postgres"), os.X_OK):
            return Path(d)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("postgres"):
        return Path(initdb).parent
    return None


def pg_major(pg_bindir: Path) -> str | None:
    """The PostgreSQL major version of Debian's /usr/lib/postgresql/<major>/bin, None elsewhere."""
    return pg_bindir.parent.name if pg_bindir.parent.name.isdigit() else None


def _version_key(path: str) -> tuple[int, ...]:
    part = Path(path).parent.name
    return tuple(int(x) for x in part.split(".") if x.isdigit()) or (0,)


def redis_server() -> Path | None:
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None)
    return Path(found) if found else None


def missing_packages(need_postgres: bool, need_redis: bool) -> list[str]:
    missing = []
    if need_postgres and pg_bindir() is None:
        missing.append("postgresql")
    if need_redis and redis_server() is None:
        missing.append("redis-server")
    return missing


def install_packages(packages: list[str]) -> None:
    """apt-get install as root on Debian/Ubuntu; elsewhere say exactly what to install."""
    if not packages:
        return
    if not is_root() or not shutil.which("apt-get"):
        raise CommandError(
            f"missing system packages: {', '.join(packages)}",
            f"install them (Debian/Ubuntu: sudo apt-get install -y {' '.join(packages)}), or run this command as root",
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    printer.step(f"apt-get install {' '.join(packages)}")
    update = subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, text=True)
    if update.returncode != 0:
        printer.warn(f"apt-get update failed, trying the install anyway: {update.stderr.strip()[-300:]}")
    proc = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CommandError(f"apt-get install {' '.join(packages)} failed:\n{proc.stderr.strip()[-2000:]}",
                           "fix the package manager's error above, then run the command again")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_port_block(n: int, host: str = "127.0.0.1") -> int:
    """The first of n consecutive free ports (the log servers: the triggerer, then one per worker)."""
    for _ in range(100):
        base = free_port(host)
        if base + n < 65535 and not any(port_in_use(base + i, host) for i in range(n)):
            return base
    raise CommandError(f"no block of {n} free ports on {host}", "free some ports, then try again")


def who_listens(port: int) -> str:
    """Best-effort name of the process that holds a TCP port (root sees every process)."""
    try:
        import psutil

        for c in psutil.net_connections(kind="tcp"):
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid:
                p = psutil.Process(c.pid)
                return f"{p.name()} (pid {c.pid})"
    except Exception:  # noqa: BLE001 - only a hint for the message
        pass
    return "another process"


def chown(path: Path, who: RunAs) -> None:
    """chown a file or directory through its own fd: refused when it is a symlink, FIFO or hard link."""
    if is_root():
        safe_files.set_owner(path, who.uid, who.gid)


def make_dir(path: Path, who: RunAs, mode: int = 0o755) -> None:
    """mkdir -p, then this mode and owner, through the directory's own fd (a planted symlink is refused)."""
    if is_root():
        safe_files.ensure_dir(path, mode, who.uid, who.gid)
    else:
        safe_files.ensure_dir(path, mode)


def check_traversable(path: Path, who: RunAs) -> None:
    """Under root the service user must be able to reach the home (e.g. not under /root)."""
    if who.is_caller:
        return
    for parent in reversed(path.parents):
        st = parent.stat()
        if not st.st_mode & 0o001 and st.st_uid != who.uid:
            raise CommandError(
                f"the service user {who.name} cannot reach {path}: {parent} is not searchable by others",
                f"choose a home outside {parent} (APACHE_AIRFLOW_HOME), or run: chmod o+x {parent}",
            )
