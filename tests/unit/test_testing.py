"""airflow_resource.testing: the helpers DAG authors use in their own repositories.

The real check runs pytest in a subprocess of the venv's Python, in a throw-away project, the way
a DAG author would (`pytest -p airflow_resource.testing`): Airflow is imported there, not into this
test process.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_resource import testing  # the public path

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dags"

AUTHOR_TESTS = '''
import pytest

from airflow_resource.testing import assert_dags_import_cleanly, dag_import_errors


def test_fixture_loads_the_ini_folder(dag_bag):
    assert sorted(dag_bag.dag_ids) == ["fixture_folder_first", "fixture_folder_second", "fixture_good"]
    assert dag_bag.import_errors == {}


def test_clean_folder_passes():
    assert_dags_import_cleanly("dags")


def test_errors_of_a_broken_folder():
    errors = dag_import_errors("broken")
    assert sorted(errors) == ["cycle.py", "missing_module.py"]
    assert "fixture_module_that_does_not_exist" in errors["missing_module.py"]


def test_assert_lists_file_and_error():
    with pytest.raises(AssertionError) as exc:
        assert_dags_import_cleanly("broken")
    message = str(exc.value)
    assert "2 DAG file(s) in broken do not import cleanly" in message
    assert ("missing_module.py: ModuleNotFoundError: No module named 'fixture_module_that_does_not_exist'"
            in message)
    assert "cycle.py: AirflowDagCycleException: Cycle detected in Dag: fixture_cycle" in message


def test_missing_folder_is_an_error():
    with pytest.raises(FileNotFoundError):
        dag_import_errors("no_such_folder")
'''


def make_project(root: Path) -> Path:
    """A DAG author's repository: dags/ (clean, with a helper package and .airflowignore), broken/."""
    dags = root / "dags"
    shutil.copytree(FIXTURES / "folder", dags)  # first.py imports sub/shared.py; ignored_broken.py is ignored
    shutil.copy(FIXTURES / "good.py", dags)
    broken = root / "broken"
    broken.mkdir()
    for name in ("good.py", "missing_module.py", "cycle.py"):
        shutil.copy(FIXTURES / name, broken)
    (root / "pytest.ini").write_text("[pytest]\nairflow_dags_dir = dags\n")
    (root / "test_my_dags.py").write_text(AUTHOR_TESTS)
    return root


@pytest.mark.skipif(importlib.util.find_spec("airflow") is None, reason="needs Airflow in this interpreter")
def test_author_project_with_the_plugin(tmp_path):
    project = make_project(tmp_path / "project")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APACHE_AIRFLOW_", "AIRFLOW", "PYTEST_"))}
    env.update({"AIRFLOW_HOME": str(tmp_path / "airflow-home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "airflow_resource.testing", "-p", "no:cacheprovider", "-q",
         "test_my_dags.py"],
        cwd=project, env=env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "5 passed" in proc.stdout


class FakeConfig(SimpleNamespace):
    def getini(self, name: str):
        if self.ini is None:
            raise ValueError(f"unknown ini option {name}")  # as pytest does when the plugin is not registered
        return self.ini


def test_dags_dir_env_wins(tmp_path, monkeypatch):
    monkeypatch.setenv(testing.DAGS_DIR_ENV, str(tmp_path / "from-env"))
    cfg = FakeConfig(ini="from-ini", rootpath=tmp_path, inipath=tmp_path / "pytest.ini")
    assert testing.dags_dir_for(cfg) == tmp_path / "from-env"


def test_dags_dir_ini_is_relative_to_the_ini_file(tmp_path, monkeypatch):
    monkeypatch.delenv(testing.DAGS_DIR_ENV, raising=False)
    cfg = FakeConfig(ini="pipelines", rootpath=tmp_path / "root", inipath=tmp_path / "cfg" / "pytest.ini")
    assert testing.dags_dir_for(cfg) == tmp_path / "cfg" / "pipelines"


def test_dags_dir_defaults_to_dags_under_rootdir(tmp_path, monkeypatch):
    monkeypatch.delenv(testing.DAGS_DIR_ENV, raising=False)
    assert testing.dags_dir_for(FakeConfig(ini="", rootpath=tmp_path, inipath=None)) == tmp_path / "dags"
    # Fixture imported into a conftest without the plugin: getini raises, the default still applies.
    assert testing.dags_dir_for(FakeConfig(ini=None, rootpath=tmp_path, inipath=None)) == tmp_path / "dags"
