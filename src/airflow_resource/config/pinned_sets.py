"""Pinned sets: the Airflow stacks this resource can install, each a committed lock file.

The default (current) set is `constraints/lock-py<X.Y>.txt`; earlier ones live in
`constraints/sets/<name>/lock-py<X.Y>.txt`. Each lock pins every file by its sha256 (scripts/lock.sh) and
is installed with --require-hashes (stack/installer.py). A set is named after the Airflow release it pins, and
sets are ordered by that release, so "newer" needs no second table. A home records the set it runs
(and the venv that holds it) in `<home>/.installed.json`; `./cli.sh manage upgrade` and `./cli.sh manage rollback`
move that record (upgrade.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_resource.errors import CommandError

from airflow_resource.paths import CONSTRAINTS_DIR
SETS_DIR = CONSTRAINTS_DIR / "sets"
HOME_RECORD = ".installed.json"  # written by `./cli.sh manage install`, moved by upgrade/rollback
VENVS_DIR = "venvs"  # <home>/venvs/<set>: the venvs of sets other than the configured venv's
# A hashed lock continues the pin's line with a backslash and its --hash options.
_AIRFLOW_PIN = re.compile(r"^apache-airflow==([0-9][0-9a-z.]*)(?=\s|$)", re.MULTILINE)


def version_key(version: str) -> tuple[int, ...]:
    """'3.3.2' -> (3, 3, 2): the order of releases (pre-release suffixes are not pinned here)."""
    return tuple(int(x) for x in re.findall(r"\d+", version))


@dataclass(frozen=True)
class PinnedSet:
    name: str
    airflow: str  # the Airflow release its lock file pins
    folder: Path  # where its requirements.in and lock files are
    default: bool

    def lock_file(self, python_version: str) -> Path:
        path = self.folder / f"lock-py{python_version}.txt"
        if not path.exists():
            have = ", ".join(sorted(p.name for p in self.folder.glob("lock-py*.txt"))) or "none"
            lock_arg = "" if self.default else f" {self.name}"
            raise CommandError(
                f"pinned set {self.name} has no lock file for Python {python_version} (have: {have})",
                f"use a Python the lock covers, or run PYTHON=python{python_version} scripts/lock.sh{lock_arg} "
                "and commit the result",
            )
        return path

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "airflow": self.airflow, "default": self.default}


def _pinned_airflow(folder: Path) -> str | None:
    for lock in sorted(folder.glob("lock-py*.txt")):
        found = _AIRFLOW_PIN.search(lock.read_text())
        if found:
            return found.group(1)
    return None


def all_sets(constraints_dir: Path = CONSTRAINTS_DIR) -> list[PinnedSet]:
    """Every pinned set of the repository, oldest first."""
    found = []
    default = _pinned_airflow(constraints_dir)
    if default:
        found.append(PinnedSet(default, default, constraints_dir, True))
    sets_dir = constraints_dir / "sets"
    for folder in sorted(sets_dir.iterdir()) if sets_dir.is_dir() else []:
        airflow = _pinned_airflow(folder)
        if airflow and folder.name != default:
            found.append(PinnedSet(folder.name, airflow, folder, False))
    return sorted(found, key=lambda p: (version_key(p.airflow), p.name))


def default_set(constraints_dir: Path = CONSTRAINTS_DIR) -> PinnedSet:
    for p in all_sets(constraints_dir):
        if p.default:
            return p
    raise CommandError(f"no default pinned set: {constraints_dir}/lock-py<X.Y>.txt pins no apache-airflow",
                       "run scripts/lock.sh and commit the result")


def get(name: str, constraints_dir: Path = CONSTRAINTS_DIR) -> PinnedSet:
    sets = all_sets(constraints_dir)
    for p in sets:
        if p.name == name:
            return p
    raise CommandError(f"unknown pinned set {name!r}",
                       f"known sets: {', '.join(p.name for p in sets)} (`./cli.sh info` lists them)")


def newest(constraints_dir: Path = CONSTRAINTS_DIR) -> PinnedSet:
    return all_sets(constraints_dir)[-1]


# ---------------------------------------------------------------- the home's record

def read_record(home: Path) -> dict[str, Any]:
    """The home's install record ({} when none). Keys: pinned_set, airflow, venv (null: the configured
    venv), previous (after an upgrade: the set, venv and backup a rollback goes back to)."""
    try:
        data = json.loads((home / HOME_RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_record(home: Path, record: dict[str, Any]) -> None:
    path = home / HOME_RECORD
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)


def recorded_venv(home: Path) -> Path | None:
    """The venv the home runs from when it is not the configured one (a set other than the default's)."""
    venv = read_record(home).get("venv")
    return Path(venv) if venv else None


def home_set_name(home: Path) -> str | None:
    """The set an installed home runs; a home installed before sets existed ran the Airflow it recorded."""
    record = read_record(home)
    return record.get("pinned_set") or record.get("airflow")


def venv_for(home: Path, target: PinnedSet, configured_venv: Path, in_use: Path | None,
             installed_airflow: str | None) -> Path:
    """Where a home's venv for `target` goes. The default set uses the configured venv (APACHE_AIRFLOW_VENV,
    <home>/venv), as always, when that venv holds no other Airflow and the home does not run from it now;
    any other set gets its own <home>/venvs/<name>, beside the one in use: a venv is never rebuilt in place."""
    if (target.default and configured_venv != in_use
            and installed_airflow in (None, target.airflow)):
        return configured_venv
    return home / VENVS_DIR / target.name
