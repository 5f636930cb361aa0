"""`./cli.sh manage install` / `uninstall`: system packages, the pinned venv, the home layout, secrets."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from airflow_resource import printer
from airflow_resource import safe_files
from airflow_resource.stack import datastores
from airflow_resource.config import pinned_sets
from airflow_resource.config import secrets
from airflow_resource.stack import system
from airflow_resource.paths import EXAMPLE_DAGS_DIR, REPO_ROOT
from airflow_resource.errors import AlreadySo, CommandError
from airflow_resource.config.settings import Settings
# What the venv holds is config's to read (the Airflow environment depends on it); the names stay
# importable here for the installer's callers.
from airflow_resource.config.venv import (  # noqa: F401
    VENV_MODULES, airflow_version, has_module, has_resource_package, missing_modules,
)

MARKER = pinned_sets.HOME_RECORD
PIP_TIMEOUT_S = 1800


def marker(s: Settings) -> Path:
    return s.home / MARKER


def home_set(s: Settings) -> pinned_sets.PinnedSet:
    """The pinned set the home runs (recorded at install, moved by upgrade/rollback); a home not installed
    yet: the one the settings ask for. A recorded set no longer in the repository keeps its Airflow version."""
    name = pinned_sets.home_set_name(s.home) if marker(s).exists() else None
    if name is None:
        return pinned_sets.get(s.pinned_set)
    try:
        return pinned_sets.get(name)
    except CommandError:
        airflow = pinned_sets.read_record(s.home).get("airflow") or name
        return pinned_sets.PinnedSet(name, airflow, pinned_sets.CONSTRAINTS_DIR, False)


def home_airflow_version(s: Settings) -> str:
    """The Airflow release the home runs (its venv's), or will run once installed (its pinned set's: the
    configured venv may hold another one, e.g. a fresh home asked to be on an older set)."""
    if marker(s).exists():
        return airflow_version(s.venv) or home_set(s).airflow
    return home_set(s).airflow


def check_pinned_set(s: Settings) -> None:
    """A pinned set asked for (flag, environment, config file) that is not the one the home runs is refused:
    only upgrade and rollback move a home between sets."""
    recorded = pinned_sets.home_set_name(s.home) if marker(s).exists() else None
    asked = s.sources.get("pinned_set", "default") not in ("default", "running stack")
    if recorded and asked and s.pinned_set != recorded:
        raise CommandError(f"{s.home} is installed on pinned set {recorded}, not {s.pinned_set} "
                           f"(asked by {s.sources['pinned_set']})",
                           f"move it with `./cli.sh manage upgrade --to {s.pinned_set}` or `./cli.sh manage rollback`, or drop "
                           "that setting; nothing was changed")
    if asked:
        pinned_sets.get(s.pinned_set)  # an unknown name is refused before anything is written


def is_installed(s: Settings) -> bool:
    return (marker(s).exists() and airflow_version(s.venv) == home_set(s).airflow
            and not missing_modules(s.venv))


def python_version(python: Path) -> str:
    return subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                          capture_output=True, text=True, check=True).stdout.strip()


def lock_file(python: Path, pinned: pinned_sets.PinnedSet | None = None) -> Path:
    return (pinned or pinned_sets.default_set()).lock_file(python_version(python))


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


def ensure_venv(venv: Path, pinned: pinned_sets.PinnedSet) -> float | None:
    """The venv with the pinned set's Airflow and this package; created and filled from the set's lock file
    when missing. Returns the seconds pip took (None: nothing to do)."""
    if airflow_version(venv) == pinned.airflow and not missing_modules(venv) and has_resource_package(venv):
        return None
    python = venv / "bin" / "python"
    if not python.exists():
        printer.step(f"creating venv {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    lock = lock_file(python, pinned)
    printer.step(f"installing Airflow {pinned.airflow} and its pinned stack from "
                 f"{lock.relative_to(REPO_ROOT)} into {venv} (1-3 minutes)")
    started = time.monotonic()
    _pip(python, lock_install_args(lock), lock)
    if not has_resource_package(venv):
        # Editable, so it needs no hash; its build backend (setuptools, wheel) came from the hashed lock:
        # without build isolation pip fetches nothing for it.
        _pip(python, ["--no-deps", "--no-build-isolation", "-e", str(REPO_ROOT)])
    _pip_check(python, lock)
    took = time.monotonic() - started
    printer.ok(f"Airflow {airflow_version(venv)} installed in {took:.0f} s")
    return took


def lock_install_args(lock: Path) -> list[str]:
    """pip arguments that install exactly a hashed lock: every file checked against its sha256
    (--require-hashes), nothing resolved beyond it (--no-deps: the lock lists every dependency), only
    wheels (--only-binary: no package's build code runs as root; scripts/lock.sh documents exceptions)."""
    return ["--require-hashes", "--no-deps", "--only-binary", ":all:", "-r", str(lock)]


HASH_MISMATCH = "DO NOT MATCH THE HASHES"


def hash_refusal(output: list[str], lock: Path | None) -> CommandError | None:
    """pip's hash-mismatch report as an error naming each package, or None when the failure is another."""
    if not any(HASH_MISMATCH in line for line in output):
        return None
    bad, seen = [], False
    for line in output:
        seen = seen or HASH_MISMATCH in line
        parts = line.split()
        if seen and len(parts) > 1 and "==" in parts[0] and parts[1] == "from":
            bad.append(parts[0])
    where = f" {lock.relative_to(REPO_ROOT) if lock.is_relative_to(REPO_ROOT) else lock}" if lock else ""
    return CommandError(
        f"refused to install {', '.join(bad) or 'a package'}: the file pip got does not match the sha256 the "
        f"lock{where} pins (nothing was installed; the venv is as it was):\n" + "\n".join(output[-12:]),
        "if the lock was edited by hand, regenerate it with scripts/lock.sh and review the diff; otherwise the "
        "file served is not the released one (a tampered index, mirror or pip cache): do not install it, "
        "clear the cache (pip cache purge) and report it")


def _pip(python: Path, args: list[str], lock: Path | None = None) -> None:
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off", *args]
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
        raise hash_refusal(tail, lock) or CommandError(
            "pip install of the pinned stack failed:\n" + "\n".join(tail),
            "fix the error above (network to PyPI, disk space), then run the command again")


def _pip_check(python: Path, lock: Path) -> None:
    """--no-deps trusts the lock to be complete: pip check proves it (a missing dependency is named)."""
    proc = subprocess.run([str(python), "-m", "pip", "check", "--disable-pip-version-check"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise CommandError(f"the venv {python.parent.parent} misses a dependency after installing "
                           f"{lock.name}:\n{proc.stdout.strip()}",
                           "add it to the set's requirements.in and re-run scripts/lock.sh (the lock must list "
                           "every dependency: it is installed with --no-deps)")


def layout(s: Settings, who: system.RunAs) -> None:
    """The home's folders, owners and modes as stack/home_layout.py's table says (created or repaired)."""
    from airflow_resource.stack import home_layout

    owners = home_layout.owners(s, create_users=True)
    safe_files.ensure_dir(s.home, 0o750, owners.uid(home_layout.ROOT), owners.gid(home_layout.SERVICE))
    system.check_traversable(s.home, who)
    home_layout.apply(s, owners)


def install_example_dags(s: Settings, who: system.RunAs) -> list[str]:
    """Copy the shipped example DAGs in (root's, readable by the service group); a file the user already has
    is never overwritten."""
    copied = []
    if not EXAMPLE_DAGS_DIR.is_dir():
        return copied
    gid = who.gid if system.is_root() else -1
    for src in sorted(EXAMPLE_DAGS_DIR.rglob("*")):
        if "__pycache__" in src.parts or src.is_dir():
            continue
        dst = s.dags_dir / src.relative_to(EXAMPLE_DAGS_DIR)
        if os.path.lexists(dst):
            continue
        if dst.parent != s.dags_dir:
            safe_files.ensure_dir(dst.parent, 0o750, os.geteuid(), gid)
        safe_files.write_file(dst, src.read_bytes(), 0o640, os.geteuid(), gid)
        copied.append(str(dst.relative_to(s.dags_dir)))
    return copied


def install(s: Settings, force: bool = False, examples: bool = True) -> Settings:
    """examples=False: a restored home keeps exactly the DAGs of its backup. Returns the settings the home
    runs with (its venv: a home on a pinned set other than the default gets its own, <home>/venvs/<set>)."""
    check_pinned_set(s)
    if is_installed(s) and not force:
        raise AlreadySo(f"already installed in {s.home}", "`./cli.sh manage start` starts it; `./cli.sh manage install --force` re-runs every step")
    check_home_owner(s)
    pinned = home_set(s)
    record = pinned_sets.read_record(s.home) if marker(s).exists() else {}
    if not record and not pinned.default:  # a new home on another set: its own venv (an installed one keeps its)
        s = dataclasses.replace(s, venv=s.home / pinned_sets.VENVS_DIR / pinned.name)
    started = time.monotonic()
    system.install_packages(system.missing_packages(s.embedded_postgres, s.embedded_redis))
    who = system.ensure_service_user(s.service_user, s.home)
    layout(s, who)
    if s.venv.parent.name == pinned_sets.VENVS_DIR:
        s.venv.parent.mkdir(exist_ok=True)
    ensure_venv(s.venv, pinned)
    sec, created = secrets.ensure(s.secrets_file)
    if created:
        printer.ok(f"generated secrets in {s.secrets_file} (mode 0600)")
    if s.embedded_postgres:
        pg_bindir = system.pg_bindir()
        assert pg_bindir is not None  # install_packages made sure
        if datastores.is_initialised(s):
            datastores.check_data_version(s, pg_bindir)
        else:
            datastores.initdb(s, sec, system.run_as(s.data_user), pg_bindir)  # layout() made the data user
    copied = install_example_dags(s, who) if examples else []
    if copied:
        printer.ok(f"example DAGs in {s.dags_dir}: {', '.join(c for c in copied if c.endswith('.py'))}")
    configured = s.configured_venv or s.venv
    record.update({"airflow": pinned.airflow, "pinned_set": pinned.name, "installed_at": time.time(),
                   "service_user": who.name, "venv": None if s.venv == configured else str(s.venv)})
    pinned_sets.write_record(s.home, record)
    printer.ok(f"installed in {s.home} (pinned set {pinned.name}: Airflow {pinned.airflow}) "
               f"({time.monotonic() - started:.0f} s)")
    return s


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
