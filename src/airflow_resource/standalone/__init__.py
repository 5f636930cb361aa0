"""Scripts copied or piped to the venv's Python: the launcher, the admin user, the requeue step, the DAG check's child.

Each runs as the service user (the launcher starts as root and drops to it) with no package import at all:
standard library and Airflow only (tests/unit/test_layout.py enforces it). `source(name)` is how the CLI reads one.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def source(name: str) -> str:
    """The text of one standalone script (e.g. "launch"), to copy to the home or pipe to the venv's Python."""
    return (HERE / f"{name}.py").read_text()
