"""Where the checkout's own files are: the one REPO_ROOT (the package is installed editable from it)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "config"            # runtime.json, schema.json, defaults.sh
CONSTRAINTS_DIR = REPO_ROOT / "constraints"  # the pinned sets' lock files
EXAMPLE_DAGS_DIR = REPO_ROOT / "dags"        # copied into a new home's dags folder
TEST_RUNNER = REPO_ROOT / "test" / "run-tests.sh"
