"""dagcheck: real validation of fixture DAG files in a subprocess of the venv's Python; devtest: real dags test.

The validation tests share one validate() call over most fixtures (Airflow's import costs ~3 s per
child). The devtest tests run `airflow dags test` for real (~10-20 s each) and are marked integration.
"""

from __future__ import annotations

import dataclasses

import importlib.util
import os
import re
import time
import uuid
import zipfile
from pathlib import Path

import psutil
import pytest

from airflow_resource.dags import dagcheck
from airflow_resource.dags import devtest
from airflow_resource.config.venv import runtime_venv

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dags"
# The runtime venv's (tests run from the test venv, which has no `airflow` script of its own)
PYTHON = runtime_venv() / "bin" / "python"
AIRFLOW_BIN = runtime_venv() / "bin" / "airflow"
TIMEOUT_S = 3.0  # Airflow's dagbag_import_timeout in the shared batch (hang.py runs this long)

needs_airflow = pytest.mark.skipif(importlib.util.find_spec("airflow") is None,
                                   reason="these tests run the venv's Python with Airflow installed")


def marked_line(path: Path, marker: str = "# <-") -> int:
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if marker in line:
            return n
    raise AssertionError(f"no {marker!r} in {path}")


def child_env(home: Path, marker: str) -> dict[str, str]:
    return {
        "PATH": f"{PYTHON.parent}:/usr/bin:/bin",
        "HOME": str(home),
        "AIRFLOW_HOME": str(home),
        "LANG": "C.UTF-8",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # The stack's settings: a metadata database nobody may touch (nothing listens on port 1).
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://nobody:x@127.0.0.1:1/airflow",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": "/srv/dags",
        "DAGCHECK_TEST_MARKER": marker,
    }


def processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("DAGCHECK_TEST_MARKER") == marker:
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def build_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("zipped_dag.py", (
            "from airflow.providers.standard.operators.empty import EmptyOperator\n"
            "from airflow.sdk import DAG\n"
            "from zipped_helper import TASK_ID\n"
            "\n"
            "with DAG('fixture_zipped', schedule=None) as dag:\n"
            "    EmptyOperator(task_id=TASK_ID)\n"))
        z.writestr("zipped_helper.py", "TASK_ID = 'from_the_helper'\n")
        z.writestr("zipped_broken.py", "from airflow.sdk import DAG\n\nraise RuntimeError('boom inside the zip')\n")
    return path


# ---------------------------------------------------------------- the shared batch

@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("dagcheck")
    bundle = build_zip(tmp / "bundle.zip")
    names = ["good.py", "syntax_error.py", "missing_module.py", "cycle.py", "dup_a.py", "dup_b.py",
             "helper.py", "folder", "hang.py"]
    paths = [FIXTURES / n for n in names] + [bundle]
    existing = {
        "fixture_good": str(FIXTURES / "good.py"),                    # the same file: not a duplicate
        "fixture_folder_second": "folder/sub/second.py",             # relative, the file being replaced
        "fixture_zipped": "/srv/dags/bundle.zip/zipped_dag.py",       # inside the zip being replaced
        "fixture_folder_first": "/srv/dags/team_b/other.py",          # another file: a duplicate
    }
    started = time.monotonic()
    reports = dagcheck.validate(paths, PYTHON, child_env(tmp, "batch"), timeout_s=TIMEOUT_S, existing=existing)
    return {"reports": reports, "by_name": {Path(r.path).name: r for r in reports},
            "elapsed": time.monotonic() - started, "bundle": bundle}


class TestValidate:
    pytestmark = [pytest.mark.unit, needs_airflow]

    def test_a_good_dag_has_no_problem(self, batch):
        r = batch["by_name"]["good.py"]
        assert r.dag_ids == ["fixture_good"]
        assert r.problems == [] and r.warnings == []
        assert r.ok and r.dest == "good.py"

    def test_syntax_error_reports_its_line(self, batch):
        r = batch["by_name"]["syntax_error.py"]
        [p] = r.problems
        assert p.kind == "syntax"
        assert p.line == marked_line(FIXTURES / "syntax_error.py")
        assert p.file == str(FIXTURES / "syntax_error.py")
        assert "never closed" in p.message

    def test_missing_module_reports_module_and_line(self, batch):
        [p] = batch["by_name"]["missing_module.py"].problems
        assert p.kind == "import"
        assert "fixture_module_that_does_not_exist" in p.message
        assert p.line == marked_line(FIXTURES / "missing_module.py")
        assert "Traceback" in p.detail

    def test_cycle(self, batch):
        r = batch["by_name"]["cycle.py"]
        [p] = r.problems
        assert p.kind == "cycle"
        assert "fixture_cycle" in p.message
        assert p.line == 7  # the faulty task's definition
        assert r.dag_ids == []

    def test_same_dag_id_in_two_given_files(self, batch):
        a, b = batch["by_name"]["dup_a.py"], batch["by_name"]["dup_b.py"]
        for r, other in ((a, b), (b, a)):
            [p] = r.problems
            assert p.kind == "duplicate"
            assert "fixture_dup" in p.message and other.path in p.message
            assert p.line == marked_line(Path(r.path))

    def test_dag_id_already_registered_by_another_file(self, batch):
        first = next(r for r in batch["reports"] if r.path.endswith("folder/first.py"))
        [p] = first.problems
        assert p.kind == "duplicate"
        assert "/srv/dags/team_b/other.py" in p.message

    def test_replacing_the_registered_file_is_not_a_duplicate(self, batch):
        second = next(r for r in batch["reports"] if r.path.endswith("folder/sub/second.py"))
        assert second.dag_ids == ["fixture_folder_second"] and second.problems == []
        assert batch["by_name"]["bundle.zip"].dag_ids == ["fixture_zipped"]
        assert not [p for p in batch["by_name"]["bundle.zip"].problems if p.kind == "duplicate"]

    def test_no_dag_is_a_warning_not_a_problem(self, batch):
        r = batch["by_name"]["helper.py"]
        assert r.problems == [] and r.ok
        [w] = r.warnings
        assert w.kind == "no_dag" and w.severity == "warning"

    def test_directory_is_recursive_and_honours_airflowignore(self, batch):
        files = [r.path for r in batch["reports"] if "/folder/" in r.path]
        # first.py imports sub/shared.py: the folder is on sys.path, as the dags folder is for Airflow.
        assert files == [str(FIXTURES / "folder" / "first.py"), str(FIXTURES / "folder" / "sub" / "second.py")]
        dests = [r.dest for r in batch["reports"] if "/folder/" in r.path]
        assert dests == ["folder/first.py", "folder/sub/second.py"]

    def test_zip_bundle(self, batch):
        r = batch["by_name"]["bundle.zip"]
        assert r.dag_ids == ["fixture_zipped"]
        [p] = r.problems
        assert p.kind == "import" and "boom inside the zip" in p.message
        assert p.file == f"{batch['bundle']}/zipped_broken.py" and p.line == 3

    def test_infinite_loop_is_a_timeout_at_its_line(self, batch):
        r = batch["by_name"]["hang.py"]
        [p] = r.problems
        assert p.kind == "timeout"
        assert p.line == marked_line(FIXTURES / "hang.py")
        assert TIMEOUT_S - 0.5 < r.duration_s < TIMEOUT_S + dagcheck.HARD_GRACE_S

    def test_reports_keep_the_given_order(self, batch):
        names = [Path(r.path).name for r in batch["reports"]]
        assert names == ["good.py", "syntax_error.py", "missing_module.py", "cycle.py", "dup_a.py", "dup_b.py",
                         "helper.py", "first.py", "second.py", "hang.py", "bundle.zip"]

    def test_format_problems_one_line_each(self, batch):
        text = dagcheck.format_problems(batch["reports"])
        lines = text.splitlines()
        assert f"{FIXTURES / 'syntax_error.py'}:{marked_line(FIXTURES / 'syntax_error.py')}: syntax: " in text
        assert re.search(r"missing_module\.py:4: import: ModuleNotFoundError: No module named "
                         r"'fixture_module_that_does_not_exist'$", text, re.M)
        assert any(line.startswith(f"{FIXTURES / 'cycle.py'}:7: cycle: ") for line in lines)
        assert any(line.endswith("(warning)") and ": no_dag: " in line for line in lines)
        assert len(lines) == sum(len(r.problems) + len(r.warnings) for r in batch["reports"])
        assert "no_dag" not in dagcheck.format_problems(batch["reports"], warnings=False)

    def test_whole_batch_in_one_child(self, batch):
        # One Airflow import (~3 s) + hang.py's timeout + the files themselves.
        assert batch["elapsed"] < 30, batch["elapsed"]


class TestHardDeadline:
    pytestmark = [pytest.mark.unit, needs_airflow]

    def test_child_that_ignores_sigalrm_is_killed_and_the_rest_still_validated(self, tmp_path, monkeypatch):
        monkeypatch.setattr(dagcheck, "HARD_GRACE_S", 2.0)
        marker = uuid.uuid4().hex
        started = time.monotonic()
        reports = dagcheck.validate([FIXTURES / "hang_hard.py", FIXTURES / "good.py"], PYTHON,
                                    child_env(tmp_path, marker), timeout_s=1)
        elapsed = time.monotonic() - started
        hung, good = reports
        [p] = hung.problems
        assert p.kind == "timeout" and "killed" in p.message
        assert p.line == marked_line(FIXTURES / "hang_hard.py")  # asked via faulthandler before the kill
        assert 2.5 < hung.duration_s < 5
        assert good.dag_ids == ["fixture_good"] and good.ok  # validated by a fresh child
        assert elapsed < 40
        assert processes_with(marker) == []

    def test_missing_path_is_a_command_error(self, tmp_path):
        from airflow_resource.errors import CommandError

        with pytest.raises(CommandError, match="does not exist"):
            dagcheck.validate([tmp_path / "nope.py"], PYTHON, child_env(tmp_path, "x"))


class TestPure:
    """No subprocess: the parts that need no Airflow."""

    pytestmark = pytest.mark.unit

    def test_existing_dest(self):
        assert dagcheck._existing_dest("a/b.py", None) == "a/b.py"
        assert dagcheck._existing_dest("/srv/dags/a/b.py", Path("/srv/dags")) == "a/b.py"
        assert dagcheck._existing_dest("/elsewhere/b.py", Path("/srv/dags")) is None
        assert dagcheck._existing_dest("", Path("/srv/dags")) is None
        assert dagcheck._covers("bundle.zip", "bundle.zip/inner.py")
        assert not dagcheck._covers("bundle.zip", "bundle.zipper/inner.py")

    def test_duplicates_against_existing(self):
        new = dagcheck.FileReport("/src/new.py", dag_ids=["x", "y"], dest="new.py", dag_lines={"x": 3})
        dagcheck._mark_duplicates([new], {"x": "/srv/dags/old.py", "y": "/srv/dags/new.py", "z": "zzz.py"},
                                  Path("/srv/dags"))
        assert [(p.kind, p.line) for p in new.problems] == [("duplicate", 3)]
        assert "/srv/dags/old.py" in new.problems[0].message

    def test_a_renamed_file_does_not_replace_its_namesake(self):
        # Placed as new_etl.py, /src/etl.py does not replace the registered etl.py: its DAG is a duplicate.
        r = dagcheck.FileReport("/src/etl.py", dag_ids=["etl"], dest="new_etl.py")
        dagcheck._mark_duplicates([r], {"etl": "/srv/dags/etl.py"}, Path("/srv/dags"))
        assert [p.kind for p in r.problems] == ["duplicate"]
        r = dagcheck.FileReport("/src/etl.py", dag_ids=["etl"], dest="etl.py")
        dagcheck._mark_duplicates([r], {"etl": "/srv/dags/etl.py"}, Path("/srv/dags"))
        assert r.problems == []

    def test_problem_format(self):
        assert dagcheck.Problem("f.py", 3, "import", "boom").format() == "f.py:3: import: boom"
        assert dagcheck.Problem("f.py", None, "cycle", "c").format() == "f.py: cycle: c"
        assert dagcheck.Problem("f.py", None, "no_dag", "n", "warning").format() == "f.py: no_dag: n (warning)"

    def test_dags_test_env_strips_the_stack(self, tmp_path):
        stack_env = {
            "PATH": "/venv/bin:/usr/bin", "HOME": "/home/x", "AIRFLOW_HOME": "/var/lib/apache-airflow/airflow",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://a:b@127.0.0.1:45432/airflow",
            "AIRFLOW__CELERY__BROKER_URL": "redis://:pw@127.0.0.1:46379/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+postgresql://a:b@127.0.0.1:45432/airflow",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://127.0.0.1:48080/execution/",
            "AIRFLOW__API__PORT": "48080", "AIRFLOW__API_AUTH__JWT_SECRET": "s",
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": "/var/lib/apache-airflow/logs/tasks",
            "AIRFLOW__CORE__FERNET_KEY": "fk", "AIRFLOW_CONN_RESOURCE_POSTGRES": "postgresql://x",
            "AIRFLOW__CORE__PLUGINS_FOLDER": "/p", "APACHE_AIRFLOW_RESOURCE_HOME": "/var/lib/apache-airflow",
        }
        env = devtest.dags_test_env(stack_env, tmp_path / "dags", tmp_path / "work")
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path / 'work' / 'airflow.db'}"
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["AIRFLOW_HOME"] == str(tmp_path / "work")
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(tmp_path / "dags")
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
        assert not [k for k in env if "CELERY" in k or "API" in k.split("__")[1:2] or "AUTH" in k]
        assert "APACHE_AIRFLOW_RESOURCE_HOME" not in env
        assert "45432" not in "".join(v for k, v in env.items() if k != "AIRFLOW_CONN_RESOURCE_POSTGRES")
        # the stack's Fernet key is a generated secret: DAG code never gets it; a caller's connection stays
        assert "AIRFLOW__CORE__FERNET_KEY" not in env and env["AIRFLOW_CONN_RESOURCE_POSTGRES"] == "postgresql://x"
        assert env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"] == str(tmp_path / "work" / "logs")

    def test_children_running_dag_code_get_no_generated_secret(self, make_settings, sec, tmp_path):
        """`content add` validation and `dags test` start from the stack's whole environment: no value of
        secrets.env may survive into their child's (the key pair by its PEM's body)."""
        from airflow_resource.config import airflow_config, jwt_keys
        from airflow_resource.dags import dagcheck_driver

        s = make_settings()
        full = {**airflow_config.airflow_env(s, sec), **sec.as_env()}
        pem_body = "".join(jwt_keys.private_pem(sec.jwt_private_key).splitlines()[1:-1])
        assert pem_body in "".join(full.values()).replace("\n", "")  # the stack's env has them all
        for env in (dagcheck_driver.child_env(full, 30), devtest.dags_test_env(full, tmp_path / "d", tmp_path / "w")):
            blob = "".join(env.values()).replace("\n", "")
            leaked = [f.name for f in dataclasses.fields(sec) if getattr(sec, f.name) in blob]
            assert leaked == [] and pem_body not in blob
            assert "APACHE_AIRFLOW_MEMFD_VARS" not in env


# ---------------------------------------------------------------- devtest: a real `airflow dags test`

@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("devtest-work")


@pytest.fixture(scope="module")
def stack_like_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    # What the stack would pass: none of it may be needed (nothing listens on port 1).
    return {
        "PATH": f"{PYTHON.parent}:/usr/bin:/bin", "HOME": str(tmp_path_factory.mktemp("home")), "LANG": "C.UTF-8",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://nobody:x@127.0.0.1:1/airflow",
        "AIRFLOW__CELERY__BROKER_URL": "redis://127.0.0.1:1/0",
    }


class TestDevtest:
    """~7 s to migrate the SQLite database once, then 10-20 s per `dags test` (most of it Airflow's
    in-process Execution API building its versioned routes): integration, not unit."""

    pytestmark = [pytest.mark.integration, needs_airflow]

    def test_one_task_dag_succeeds_and_reuses_the_database(self, work_dir, stack_like_env):
        dags = FIXTURES / "devtest"
        rc = devtest.run_dag_test(PYTHON, AIRFLOW_BIN, stack_like_env, "fixture_one_task", dags, work_dir,
                                  {"greeting": "hi"}, None)
        assert rc == 0
        db = work_dir / devtest.DB_NAME
        assert db.exists() and (work_dir / devtest.VERSION_MARKER).exists()
        mtime = os.stat(work_dir / devtest.VERSION_MARKER).st_mtime_ns
        migrated = devtest.ensure_db(PYTHON, AIRFLOW_BIN, devtest.dags_test_env(stack_like_env, dags, work_dir),
                                     work_dir)
        assert migrated is False and os.stat(work_dir / devtest.VERSION_MARKER).st_mtime_ns == mtime

    def test_failing_dag_returns_non_zero(self, work_dir, stack_like_env):
        rc = devtest.run_dag_test(PYTHON, AIRFLOW_BIN, stack_like_env, "fixture_failing", FIXTURES / "devtest",
                                  work_dir, None, None)
        assert rc != 0
