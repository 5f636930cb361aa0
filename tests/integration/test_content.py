"""The DAG author's workflow on the real stack: add, list, get, execute, clear, backfill, remove; bad input."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "content"
RUN_TIMEOUT = "240"


def _dags_dir(stack) -> Path:
    return stack.home / "dags"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _runs(stack, dag_id: str) -> int:
    r = stack.rest("GET", f"/dags/{dag_id}/dagRuns")
    return r.json()["total_entries"] if r.status_code == 200 else 0


def test_add_validates_places_and_waits_until_registered(running_stack):
    started = time.monotonic()
    proc = running_stack.cli("content", "add", "--file", str(FIXTURES / "content_hello.py"), timeout=180)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "content_hello"
    assert "registered content_hello" in proc.stderr
    assert (_dags_dir(running_stack) / "content_hello.py").read_bytes() == (FIXTURES / "content_hello.py").read_bytes()
    assert running_stack.rest("GET", "/dags/content_hello").status_code == 200
    print(f"content add -> registered: {took:.1f} s")


def test_add_existing_file_needs_force(running_stack):
    again = running_stack.cli("content", "add", "--file", str(FIXTURES / "content_hello.py"), timeout=120)
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr
    forced = running_stack.cli("content", "add", "--file", str(FIXTURES / "content_hello.py"), "--force", timeout=180)
    assert forced.returncode == 0, forced.stderr


@pytest.mark.parametrize("fixture, expected", [
    ("broken_syntax.py", ["broken_syntax.py:", "syntax"]),
    ("broken_import.py", ["broken_import.py:3", "no_such_module_for_tests"]),
    ("broken_loop.py", ["broken_loop.py", "timeout"]),
    ("broken_cycle.py", ["broken_cycle.py", "cycle"]),
    ("broken_duplicate.py", ["example_etl", "duplicate"]),
])
def test_bad_dag_files_are_refused_and_the_folder_is_unchanged(running_stack, fixture, expected):
    before = _snapshot(_dags_dir(running_stack))
    proc = running_stack.cli("content", "add", "--file", str(FIXTURES / fixture), timeout=180)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for text in expected:
        assert text in proc.stderr, proc.stderr
    assert "unchanged" in proc.stderr and "Traceback (most recent call last)" not in proc.stderr.split("problem")[0]
    assert _snapshot(_dags_dir(running_stack)) == before


def test_add_missing_file_and_wrong_type(running_stack, tmp_path):
    missing = running_stack.cli("content", "add", "--file", str(tmp_path / "nope.py"), timeout=60)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    wrong = running_stack.cli("content", "add", "--file", str(text), timeout=60)
    assert wrong.returncode == 1 and "not a DAG file" in wrong.stderr


def test_a_file_dropped_by_hand_appears_in_the_api_within_seconds(running_stack):
    target = _dags_dir(running_stack) / "content_typed.py"
    shutil.copy(FIXTURES / "content_typed.py", target.with_suffix(".tmp"))
    shutil.chown(target.with_suffix(".tmp"), *_owner(running_stack))
    started = time.monotonic()
    target.with_suffix(".tmp").rename(target)
    running_stack.wait_for(lambda: running_stack.rest("GET", "/dags/content_typed").status_code == 200, 60,
                           "content_typed to be registered", poll=0.2)
    print(f"file dropped by hand -> in the API: {time.monotonic() - started:.1f} s")


def test_a_changed_file_is_reparsed_within_seconds(running_stack):
    target = _dags_dir(running_stack) / "content_typed.py"
    changed = target.read_text().replace('params={"rows"', 'tags=["changed"], params={"rows"')
    assert changed != target.read_text()
    started = time.monotonic()
    target.write_text(changed)

    def has_tag():
        dag = running_stack.rest("GET", "/dags/content_typed").json()
        return "changed" in [t["name"] for t in dag.get("tags", [])]

    running_stack.wait_for(has_tag, 60, "the changed file to be re-parsed", poll=0.2)
    print(f"file changed by hand -> new version in the API: {time.monotonic() - started:.1f} s")


def test_add_a_folder_and_a_zip_bundle(running_stack, tmp_path):
    folder = tmp_path / "team_pipelines"
    folder.mkdir()
    for i in (1, 2):
        (folder / f"pipe_{i}.py").write_text(
            (FIXTURES / "content_hello.py").read_text().replace("content_hello", f"content_folder_{i}"))
    proc = running_stack.cli("content", "add", "--file", str(folder), timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["content_folder_1", "content_folder_2"]
    placed = sorted(p.name for p in (_dags_dir(running_stack) / "team_pipelines").glob("*.py"))
    assert placed == ["pipe_1.py", "pipe_2.py"]
    import zipfile

    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as z:
        z.writestr("zipped.py", (FIXTURES / "content_hello.py").read_text().replace("content_hello", "content_zipped"))
    proc = running_stack.cli("content", "add", "--file", str(bundle), timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["content_zipped"]
    run = running_stack.cli("content", "execute", "content_zipped", "--wait", "--timeout", RUN_TIMEOUT, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    removed = running_stack.cli("content", "remove", "content_folder_1", timeout=60)
    assert removed.returncode == 1 and "also defines content_folder_2" in removed.stderr
    assert running_stack.cli("content", "remove", "content_folder_1", "--force", timeout=60).returncode == 0
    assert not (_dags_dir(running_stack) / "team_pipelines").exists()
    assert running_stack.cli("content", "remove", "content_zipped", timeout=60).returncode == 0
    assert not (_dags_dir(running_stack) / "bundle.zip").exists()


def _owner(stack) -> tuple[str, str]:
    d = _dags_dir(stack)
    import grp
    import pwd

    st = d.stat()
    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name


def test_get_prints_source_and_params(running_stack, tmp_path):
    proc = running_stack.cli("content", "get", "content_hello", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "content_hello says" in proc.stdout and "greeting='hello'" in proc.stdout
    out = tmp_path / "src.py"
    assert running_stack.cli("content", "get", "--name", "content_hello", "--output", str(out), timeout=60).returncode == 0
    assert out.read_text() == (FIXTURES / "content_hello.py").read_text()
    missing = running_stack.cli("content", "get", "no_such_dag", timeout=60)
    assert missing.returncode == 2 and "no DAG named 'no_such_dag'" in missing.stderr


def test_execute_with_wait_succeeds_and_shows_tasks(running_stack):
    started = time.monotonic()
    proc = running_stack.cli("content", "execute", "content_hello", "--param", "greeting=bonjour", "--param",
                             "times=2", "--wait", "--timeout", RUN_TIMEOUT, timeout=300)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "say" in proc.stdout and "success" in proc.stdout
    run = running_stack.rest("GET", "/dags/content_hello/dagRuns", params={"order_by": "-run_after", "limit": 1}).json()
    latest = run["dag_runs"][0]
    assert latest["state"] == "success" and latest["conf"] == {"greeting": "bonjour", "times": 2}
    print(f"content execute --wait (one task) -> success: {took:.1f} s")


def test_list_shows_dags_runs_and_import_errors(running_stack):
    broken = _dags_dir(running_stack) / "zz_broken_by_hand.py"
    broken.write_text("from airflow.sdk import dag  # mentions airflow and dag, so Airflow parses it\nimport not_installed_anywhere\n")
    try:
        def listed():
            proc = running_stack.cli("content", "list", "--format", "json", timeout=60)
            assert proc.returncode == 0, proc.stderr
            data = json.loads(proc.stdout)
            return data if any("zz_broken_by_hand.py" in (e["file"] or "") for e in data["import_errors"]) else None

        data = running_stack.wait_for(listed, 60, "the import error to be listed")
        ids = {d["dag_id"]: d for d in data["dags"]}
        assert {"example_etl", "example_ml", "content_hello"} <= set(ids)
        assert ids["content_hello"]["last_run_state"] == "success"  # run by the execute test above
        assert ids["content_hello"]["paused"] is False and ids["content_hello"]["last_run_at"]
        assert ids["example_etl"]["file"].endswith("example_etl.py")
        err = next(e for e in data["import_errors"] if "zz_broken_by_hand.py" in e["file"])
        assert "not_installed_anywhere" in err["error"]
        filtered = json.loads(running_stack.cli("content", "list", "--format", "json", "--filter", "content_",
                                                timeout=60).stdout)
        assert {d["dag_id"] for d in filtered["dags"]} >= {"content_hello"}
        assert "example_etl" not in {d["dag_id"] for d in filtered["dags"]}
    finally:
        broken.unlink()


@pytest.mark.parametrize("args, message", [
    (["--conf", "{not json"], "--conf is not JSON"),
    (["--conf", "[1, 2]"], "must be a JSON object"),
    (["--param", "rows=many"], "rows: 'many' is not of type 'integer'"),
    (["--param", "rows=0"], "rows: 0 is less than the minimum of 1"),
    (["--param", "mode=slow"], "mode: 'slow' is not one of"),
])
def test_bad_conf_is_refused_before_any_run_exists(running_stack, args, message):
    before = _runs(running_stack, "content_typed")
    proc = running_stack.cli("content", "execute", "content_typed", *args, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert _runs(running_stack, "content_typed") == before


def test_execute_unknown_dag_exits_2(running_stack):
    proc = running_stack.cli("content", "execute", "no_such_dag", timeout=60)
    assert proc.returncode == 2 and "no DAG named" in proc.stderr


def test_failed_run_prints_the_task_log_then_clear_reruns_it(running_stack):
    add = running_stack.cli("content", "add", "--file", str(FIXTURES / "content_flaky.py"), timeout=180)
    assert add.returncode == 0, add.stderr
    flag = running_stack.home / "data" / "content_flaky.flag"
    flag.unlink(missing_ok=True)
    failed = running_stack.cli("content", "execute", "content_flaky", "--wait", "--timeout", RUN_TIMEOUT, timeout=300)
    assert failed.returncode == 1
    assert "log of failed task needs_flag" in failed.stdout
    assert "content_flaky.flag is missing" in failed.stdout
    flag.write_text("ok")
    shutil.chown(flag, *_owner(running_stack))
    cleared = running_stack.cli("dags", "clear", "content_flaky", "--wait", "--timeout", RUN_TIMEOUT, timeout=300)
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr
    assert "cleared 1 task(s)" in cleared.stderr
    nothing = running_stack.cli("dags", "clear", "content_flaky", timeout=60)
    assert nothing.returncode == 2


def test_pause_and_unpause(running_stack):
    assert running_stack.cli("dags", "pause", "content_hello", timeout=60).returncode == 0
    assert running_stack.rest("GET", "/dags/content_hello").json()["is_paused"] is True
    assert running_stack.cli("dags", "pause", "content_hello", timeout=60).returncode == 2
    assert running_stack.cli("dags", "unpause", "content_hello", timeout=60).returncode == 0
    assert running_stack.rest("GET", "/dags/content_hello").json()["is_paused"] is False


def test_backfill_a_date_range(running_stack):
    add = running_stack.cli("content", "add", "--file", str(FIXTURES / "content_daily.py"), timeout=180)
    assert add.returncode == 0, add.stderr
    proc = running_stack.cli("dags", "backfill", "content_daily", "--from", "2026-02-01", "--to", "2026-02-03",
                             "--wait", "--timeout", RUN_TIMEOUT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 run(s): 3 succeeded, 0 failed" in proc.stdout
    unscheduled = running_stack.cli("dags", "backfill", "content_hello", "--from", "2026-02-01", "--to",
                                    "2026-02-02", timeout=60)
    assert unscheduled.returncode == 2 and "no schedule" in unscheduled.stderr


def test_remove_keeps_history_unless_purged(running_stack):
    runs = _runs(running_stack, "content_hello")
    assert runs >= 1
    proc = running_stack.cli("content", "remove", "content_hello", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not (_dags_dir(running_stack) / "content_hello.py").exists()
    assert _runs(running_stack, "content_hello") == runs  # history kept
    purge_target = running_stack.cli("content", "remove", "content_flaky", "--purge", timeout=60)
    assert purge_target.returncode == 0, purge_target.stderr
    assert running_stack.rest("GET", "/dags/content_flaky").status_code == 404
    assert running_stack.cli("content", "remove", "no_such_dag", timeout=60).returncode == 2
