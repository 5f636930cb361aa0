"""Test helpers for DAG authors' own repositories: does every DAG file import cleanly?

Runs in the interpreter of the tests (which must have Airflow installed), with Airflow's own
DagBag: the same parsing the dag-processor does, so a green test means the stack will load the
folder. Import errors, dependency cycles, duplicate dag_ids and DAG-validation failures all count.

    # test_dags.py
    from airflow_resource.testing import assert_dags_import_cleanly

    def test_dags_import_cleanly():
        assert_dags_import_cleanly("dags")

or as a pytest plugin (`pytest -p airflow_resource.testing`, or in conftest.py:
`pytest_plugins = ["airflow_resource.testing"]`), which gives the session fixture `dag_bag`:

    def test_no_import_errors(dag_bag):
        assert not dag_bag.import_errors

    def test_every_dag_has_an_owner(dag_bag):
        for dag in dag_bag.dags.values():
            assert dag.owner != "airflow", dag.dag_id

The fixture's folder: the environment variable APACHE_AIRFLOW_DAGS_DIR (relative to the current
directory), else the ini option `airflow_dags_dir` (relative to the ini file), else "dags"
(relative to pytest's rootdir). `from airflow_resource.testing import dag_bag` in a conftest.py
works too; then only the environment variable and the default apply.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from pathlib import Path
from typing import Any, Iterator

DAGS_DIR_ENV = "APACHE_AIRFLOW_DAGS_DIR"
DAGS_DIR_INI = "airflow_dags_dir"
DEFAULT_DAGS_DIR = "dags"


def _dagbag_class() -> Any:
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow >= 3.1
    except ImportError:  # pragma: no cover - older Airflow
        from airflow.models.dagbag import DagBag
    return DagBag


@contextlib.contextmanager
def _on_sys_path(folder: Path) -> Iterator[None]:
    """The dag-processor puts the dags folder on sys.path; so must a test, for helper modules next to DAGs."""
    entry = str(folder)
    added = entry not in sys.path
    if added:
        sys.path.append(entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def load_dag_bag(folder: str | os.PathLike[str]) -> Any:
    """Airflow's DagBag of the folder (files listed in .airflowignore are skipped, as by the stack)."""
    path = Path(folder).expanduser().absolute()
    if not path.exists():
        raise FileNotFoundError(f"DAG folder {path} does not exist")
    DagBag = _dagbag_class()
    kwargs: dict[str, Any] = {"dag_folder": str(path)}
    params = inspect.signature(DagBag.__init__).parameters
    if "include_examples" in params:  # Airflow 2 and 3.0 would add the example DAGs
        kwargs["include_examples"] = False
    if "bundle_path" in params:  # relative file names in import_errors, as the UI shows them
        kwargs["bundle_path"] = path if path.is_dir() else path.parent
    with _on_sys_path(path if path.is_dir() else path.parent):
        return DagBag(**kwargs)


def dag_import_errors(folder: str | os.PathLike[str]) -> dict[str, str]:
    """{file (relative to the folder): error (traceback or message)} for every DAG file that fails."""
    return dict(load_dag_bag(folder).import_errors)


def assert_dags_import_cleanly(folder: str | os.PathLike[str]) -> None:
    """Raise AssertionError listing `file: error` for every DAG file that does not import cleanly."""
    errors = dag_import_errors(folder)
    if errors:
        lines = [f"{len(errors)} DAG file(s) in {folder} do not import cleanly:"]
        for file, error in sorted(errors.items()):
            lines.append(f"{file}: {_last_line(error)}")
            lines.extend("    " + ln for ln in error.strip().splitlines()[-12:])
        raise AssertionError("\n".join(lines))


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "failed"


# ---------------------------------------------------------------- pytest plugin

try:
    import pytest
except ImportError:  # pragma: no cover - the helpers above work without pytest
    pytest = None  # type: ignore[assignment]


def dags_dir_for(config: Any) -> Path:
    """The folder the dag_bag fixture loads: env var, else ini option, else "dags" under rootdir."""
    env = os.environ.get(DAGS_DIR_ENV)
    if env:
        return Path(env).expanduser().absolute()
    try:
        ini = config.getini(DAGS_DIR_INI)
    except (ValueError, KeyError):  # the plugin is not registered: the fixture was imported directly
        ini = None
    root = Path(config.rootpath)
    if ini:
        base = Path(config.inipath).parent if getattr(config, "inipath", None) else root
        return (base / Path(ini).expanduser()).absolute()
    return (root / DEFAULT_DAGS_DIR).absolute()


if pytest is not None:

    def pytest_addoption(parser: Any) -> None:
        parser.addini(DAGS_DIR_INI, f"folder of DAG files for the dag_bag fixture ({DAGS_DIR_ENV} overrides it)",
                      default="")

    @pytest.fixture(scope="session")
    def dag_bag(request: Any) -> Any:
        """Airflow's DagBag of the project's DAG folder, parsed once per test session."""
        folder = dags_dir_for(request.config)
        if not folder.exists():
            pytest.fail(f"DAG folder {folder} does not exist: set {DAGS_DIR_ENV} or the ini option "
                        f"{DAGS_DIR_INI}", pytrace=False)
        return load_dag_bag(folder)
