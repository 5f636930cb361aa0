"""What a venv holds, read from its site-packages folder without importing anything (fast, and safe
for a venv of another Python): which packages, which Airflow release, whether this package is in it.

config owns it because the Airflow environment depends on it (gunicorn or not); the installer fills
the venv and reads it through these.
"""

from __future__ import annotations

import glob
import importlib.util
import sys
from pathlib import Path

# Python packages of the lock file the stack needs beyond Airflow itself: a venv made before one was
# pinned is completed from the lock file at the next install (and so at the next `manage start`).
VENV_MODULES = ("statsd",)  # Airflow's statsd client: without it Airflow silently sends no metrics


def site_packages(venv: Path) -> Path:
    """A glob pattern: the venv's Python version is not known without running it."""
    return venv / "lib" / "python3*" / "site-packages"


def has_module(venv: Path, module: str) -> bool:
    """Is the package installed in the venv (read from its folder, no import: fast)?"""
    return bool(glob.glob(str(site_packages(venv) / module / "__init__.py")))


def missing_modules(venv: Path) -> list[str]:
    return [m for m in VENV_MODULES if not has_module(venv, m)]


def has_resource_package(venv: Path) -> bool:
    """Components run this package's modules (launcher, metrics, housekeeper) with the stack venv's Python."""
    return venv == Path(sys.prefix) or bool(glob.glob(str(site_packages(venv) / "airflow_resource-*.dist-info")))


def airflow_version(venv: Path) -> str | None:
    """Installed Airflow version, read from its dist-info (no import: fast)."""
    found = glob.glob(str(site_packages(venv) / "apache_airflow-*.dist-info"))
    if not found:
        return None
    return Path(found[0]).name[len("apache_airflow-"):-len(".dist-info")]


def runtime_venv() -> Path:
    """The venv holding Airflow, which a stack started from this process runs from: this Python's own, or,
    from the test venv (scripts/test-venv.sh reaches the runtime venv through a .pth), the airflow
    package's. find_spec locates it without importing it."""
    spec = importlib.util.find_spec("airflow")
    if spec is None or spec.origin is None:
        return Path(sys.prefix)
    return Path(spec.origin).parents[4]  # <venv>/lib/pythonX.Y/site-packages/airflow/__init__.py
