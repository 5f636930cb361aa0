"""
### example_virtualenv

`in_venv` runs in its own Python virtual environment (`@task.virtualenv`),
not in the worker's interpreter: Airflow writes the function's source to a
script, runs it with the venv's `python`, and passes arguments in and the
return value out with pickle.

The venv needs nothing from the network: no extra `requirements`, and
`system_site_packages=False`, so it holds only the standard library (not
even Airflow: the function imports what it needs inside its body and
cannot use Airflow's context). Without `uv` on the worker's PATH, Airflow
builds it with `python -m venv` (pip comes from the bundled ensurepip
wheels). `venv_cache_path` keeps the built venv under
`$APACHE_AIRFLOW_DATA_DIR/example_virtualenv/venvs/venv-<hash>`: the first
run builds it (a few seconds), later runs reuse it. To get real packages,
list them in `requirements` (needs the package index, or a pip
`--find-links` folder in `pip_install_options`).

`compare` runs in the worker's interpreter and checks the two differ.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pendulum
from airflow.sdk import dag, task

# Computed when the DAG is parsed, so the dag-processor must see the same
# APACHE_AIRFLOW_DATA_DIR as the workers (the product sets it for both).
VENV_CACHE = (Path(os.environ.get("APACHE_AIRFLOW_DATA_DIR") or Path(tempfile.gettempdir()) / "airflow-resource-data")
              / "example_virtualenv" / "venvs")


@dag(
    dag_id="example_virtualenv",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "virtualenv"],
    doc_md=__doc__,
)
def example_virtualenv():
    @task.virtualenv(
        requirements=[],
        system_site_packages=False,
        venv_cache_path=str(VENV_CACHE),
        # Install step of an empty requirements list: never ask an index or check pip's version.
        pip_install_options=["--no-index", "--disable-pip-version-check"],
    )
    def in_venv(numbers: list[int]) -> dict:
        # Runs in the venv's interpreter: only the standard library is importable here.
        import importlib.util
        import statistics
        import sys

        result = {
            "prefix": sys.prefix,
            "executable": sys.executable,
            "python": sys.version.split()[0],
            "airflow_importable": importlib.util.find_spec("airflow") is not None,
            "median": statistics.median(numbers),
        }
        print(f"running in {sys.prefix}")
        return result

    @task
    def compare(venv: dict) -> dict:
        import sys

        print(f"worker interpreter: {sys.prefix}; virtualenv: {venv['prefix']}")
        if venv["prefix"] == sys.prefix:
            raise ValueError("the virtualenv task ran in the worker's own interpreter")
        if venv["airflow_importable"]:
            raise ValueError("Airflow was importable in the isolated venv")
        if venv["median"] != 3:
            raise ValueError(f"unexpected median {venv['median']}")
        return {"worker_prefix": sys.prefix, "venv_prefix": venv["prefix"]}

    compare(in_venv([5, 1, 3, 2, 4]))


example_virtualenv()
