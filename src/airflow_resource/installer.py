"""`manage install` / `uninstall`: system packages, the pinned venv, the home layout, secrets."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from airflow_resource import AIRFLOW_VERSION, datastores, printer, secrets, system
from airflow_resource.errors import AlreadySo, CommandError
from airflow_resource.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK_DIR = REPO_ROOT / "constraints"
EXAMPLE_DAGS_DIR = REPO_ROOT / "dags"
MARKER = ".installed.json"
PIP_TIMEOUT_S = 1800


def marker(s: Settings) -> Path:
    return s.home / MARKER


def is_installed(s: Settings) -> bool:
    return marker(s).exists() and airflow_version(s.venv) == AIRFLOW_VERSION and not missing_modules(s.venv)


# Python packages of the lock file the stack needs beyond Airflow itself: a venv made before one was
# pinned is completed from the lock file at the next install (and so at the next `manage start`).
VENV_MODULES = ("statsd",)  # Airflow's statsd client: without it Airflow silently sends no metrics


def missing_modules(venv: Path) -> list[str]:
    site = venv / "lib" / "python3*" / "site-packages"
    return [m for m in VENV_MODULES if not glob.glob(str(site / m / "__init__.py"))]


def airflow_version(venv: Path) -> str | None:
    """Installed Airflow version, read from its dist-info (no import: fast)."""
    found = glob.glob(str(venv / "lib" / "python3*" / "site-packages" / "apache_airflow-*.dist-info"))
    if not found:
        return None
    return Path(found[0]).name[len("apache_airflow-"):-len(".dist-info")]


def lock_file(python: Path) -> Path:
    ver = subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    path = LOCK_DIR / f"lock-py{ver}.txt"
    if not path.exists():
        have = ", ".join(sorted(p.name for p in LOCK_DIR.glob("lock-py*.txt"))) or "none"
        raise CommandError(
            f"no lock file for Python {ver} (have: {have})",
            f"use a Python the lock covers, or run PYTHON=python{ver} scripts/lock.sh and commit the result",
        )
    return path


def check_home_owner(s: Settings) -> None:
    """A home that belongs to someone else is refused before anything is written."""
    probe = s.home
    while not probe.exists():
        probe = probe.parent
    st = probe.stat()
    if probe == s.home and st.st_uid != os.geteuid():
        raise CommandError(
            f"{s.home} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()})",
            "run as that user, or choose another home with APACHE_AIRFLOW_HOME",
        )
    if probe != s.home and not os.access(probe, os.W_OK | os.X_OK):
        raise CommandError(f"cannot create {s.home}: {probe} is not writable by you",
                           "choose another home with APACHE_AIRFLOW_HOME")


def ensure_venv(s: Settings) -> None:
    """The venv with the pinned Airflow; created and filled from the lock file when missing."""
    if airflow_version(s.venv) == AIRFLOW_VERSION and not missing_modules(s.venv):
        return
    python = s.venv / "bin" / "python"
    if not python.exists():
        printer.step(f"creating venv {s.venv}")
        subprocess.run([sys.executable, "-m", "venv", str(s.venv)], check=True)
    lock = lock_file(python)
    printer.step(f"installing Airflow {AIRFLOW_VERSION} and its pinned stack from {lock.name} (1-3 minutes)")
    started = time.monotonic()
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off",
           "-r", str(lock)]
    with printer.status("pip install") as spinner:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line.startswith(("Collecting", "Downloading", "Installing", "Successfully")):
                spinner.update(f"pip: {line[:100]}")
            if not line.startswith("WARNING: Location"):
                tail = (tail + [line])[-30:]
        rc = proc.wait(timeout=PIP_TIMEOUT_S)
    if rc != 0:
        raise CommandError("pip install of the pinned stack failed:\n" + "\n".join(tail),
                           "fix the error above (network to PyPI, disk space), then run `manage install` again")
    printer.ok(f"Airflow {airflow_version(s.venv)} installed in {time.monotonic() - started:.0f} s")


def layout(s: Settings, who: system.RunAs) -> None:
    """The home's folders: the CLI's user owns home, venv and secrets; the service user the rest."""
    s.home.mkdir(parents=True, exist_ok=True)
    os.chmod(s.home, 0o755)
    system.check_traversable(s.home, who)
    for d in (s.airflow_home, s.dags_dir, s.plugins_dir, s.logs_dir, s.component_logs_dir,
              s.task_logs_dir, s.data_dir, s.run_dir):
        system.make_dir(d, who)
    for d in (s.redis_dir, s.backups_dir):
        system.make_dir(d, who, 0o700)


def install_example_dags(s: Settings, who: system.RunAs) -> list[str]:
    """Copy the shipped example DAGs in; a file the user already has is never overwritten."""
    copied = []
    if not EXAMPLE_DAGS_DIR.is_dir():
        return copied
    for src in sorted(EXAMPLE_DAGS_DIR.rglob("*")):
        if "__pycache__" in src.parts or src.is_dir():
            continue
        dst = s.dags_dir / src.relative_to(EXAMPLE_DAGS_DIR)
        if dst.exists():
            continue
        system.make_dir(dst.parent, who)
        shutil.copy2(src, dst)
        system.chown(dst, who)
        copied.append(str(dst.relative_to(s.dags_dir)))
    return copied


def install(s: Settings, force: bool = False, examples: bool = True) -> None:
    """examples=False: a restored home keeps exactly the DAGs of its backup."""
    if is_installed(s) and not force:
        raise AlreadySo(f"already installed in {s.home}", "`manage start` starts it; `manage install --force` re-runs every step")
    check_home_owner(s)
    started = time.monotonic()
    system.install_packages(system.missing_packages(s.embedded_postgres, s.embedded_redis))
    who = system.ensure_service_user(s.service_user, s.home)
    layout(s, who)
    ensure_venv(s)
    sec, created = secrets.ensure(s.secrets_file)
    if created:
        printer.ok(f"generated secrets in {s.secrets_file} (mode 0600)")
    if s.embedded_postgres:
        pg_bindir = system.pg_bindir()
        assert pg_bindir is not None  # install_packages made sure
        if datastores.is_initialised(s):
            datastores.check_data_version(s, pg_bindir)
        else:
            datastores.initdb(s, sec, who, pg_bindir)
    copied = install_example_dags(s, who) if examples else []
    if copied:
        printer.ok(f"example DAGs in {s.dags_dir}: {', '.join(c for c in copied if c.endswith('.py'))}")
    marker(s).write_text(json.dumps({"airflow": AIRFLOW_VERSION, "installed_at": time.time(),
                                     "service_user": who.name}) + "\n")
    printer.ok(f"installed in {s.home} ({time.monotonic() - started:.0f} s)")


KEEP_ON_UNINSTALL = ("postgres", "redis", "dags", "plugins", "data", "logs", "backups", "alerts", "secrets.env",
                     "resource.toml")


def uninstall(s: Settings, keep_data: bool) -> None:
    if not s.home.exists():
        raise AlreadySo(f"nothing installed in {s.home}")
    check_home_owner(s)
    for entry in sorted(s.home.iterdir()):
        if keep_data and entry.name in KEEP_ON_UNINSTALL:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    if not keep_data:
        s.home.rmdir()
    printer.ok(f"uninstalled {s.home}" + (" (kept: " + ", ".join(KEEP_ON_UNINSTALL) + ")" if keep_data else ""))
