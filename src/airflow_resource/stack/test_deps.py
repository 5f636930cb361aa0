"""What each test phase needs from the machine beyond the venv, installed the way `manage start` installs
PostgreSQL and Redis (stack/system.py): apt-get as root, otherwise an error naming the packages, exit 1.

test/run-tests.sh runs it before pytest, so `./cli.sh test all` on a fresh machine has what its tests
drive: `python -m airflow_resource.stack.test_deps --phase all`. The Python side is not here: pytest and
Playwright are in the test venv (scripts/test-venv.sh, constraints/test-lock-py<X.Y>.txt, hashed),
prometheus_client in the runtime venv (the metrics daemon's); this is only what Debian packages.
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass
from typing import Callable

from airflow_resource import printer
from airflow_resource.errors import CommandError
from airflow_resource.stack import system

# The browser the e2e tests drive; tests/e2e/conftest.py reads the same variable.
CHROMIUM_ENV = "APACHE_AIRFLOW_E2E_CHROMIUM"


@dataclass(frozen=True)
class Need:
    package: str   # the Debian package
    binary: str    # what the tests run: an absolute path, or a name looked up on PATH
    used_by: str   # which tests, for the message


CHROMIUM = Need("chromium", "/usr/bin/chromium", "the browser tests (tests/e2e: Playwright drives Debian's "
                                                 "chromium, it never downloads one)")
PROMETHEUS = Need("prometheus", "prometheus", "the metrics tests (tests/integration/test_metrics.py scrapes "
                                              "the stack's /metrics with a Prometheus server)")

# phase (test/run-tests.sh's argument) -> what its tests need. unit needs nothing; smoke talks to the
# running default stack; long runs the UI behind a proxy (e2e) and no metrics test.
PHASES: dict[str, tuple[Need, ...]] = {
    "unit": (),
    "smoke": (),
    "integration": (PROMETHEUS,),
    "e2e": (CHROMIUM,),
    "all": (PROMETHEUS, CHROMIUM),
    "long": (CHROMIUM,),
}


def binary_of(need: Need, environ: dict[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    if need is CHROMIUM and environ.get(CHROMIUM_ENV):
        return environ[CHROMIUM_ENV]
    return need.binary


def present(binary: str) -> bool:
    if os.sep in binary:
        return os.access(binary, os.X_OK)
    return shutil.which(binary) is not None


def missing(phase: str, environ: dict[str, str] | None = None,
            is_present: Callable[[str], bool] = present) -> list[Need]:
    """What the phase's tests need and the machine lacks."""
    phase = phase.removeprefix("--")
    if phase not in PHASES:
        raise CommandError(f"unknown test phase {phase!r}", f"use one of: {', '.join(PHASES)}")
    return [n for n in PHASES[phase] if not is_present(binary_of(n, environ))]


def ensure(phase: str, environ: dict[str, str] | None = None, is_present: Callable[[str], bool] = present,
           install: Callable[[list[str]], None] = system.install_packages) -> list[str]:
    """Install what the phase lacks (apt-get as root; else a CommandError naming the packages). Returns
    the packages installed."""
    lacking = missing(phase, environ, is_present)
    if not lacking:
        return []
    for need in lacking:
        printer.step(f"{need.package}: needed by {need.used_by}")
    packages = [n.package for n in lacking]
    install(packages)
    still = [n for n in lacking if not is_present(binary_of(n, environ))]
    if still:
        raise CommandError(
            f"{', '.join(n.package for n in still)} installed, but {', '.join(binary_of(n, environ) for n in still)} "
            "is still missing",
            f"install it by hand, or point {CHROMIUM_ENV} at a chromium" if CHROMIUM in still else "install it by hand",
        )
    return packages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_resource.stack.test_deps",
                                     description="Install the system packages a test phase needs.")
    parser.add_argument("--phase", required=True, help=f"one of: {', '.join(PHASES)} (a leading -- is dropped)")
    args = parser.parse_args(argv)
    try:
        ensure(args.phase)
    except CommandError as exc:
        printer.error(exc.message, exc.hint)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
