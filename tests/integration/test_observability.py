"""Observability on the real stack: log search, one task's log (followed while it runs), log retention by the
housekeeper, failure and deadline alerts POSTed to a real HTTP receiver, and `status --verbose`.

A DAG whose task fails with a known line (obs_fail) runs once for the module; the stack's alert webhook is the
session's receiver (tests/conftest.py), which answers the first POST it ever gets with 500.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.test_stack import _run_dag

pytestmark = pytest.mark.integration

FIXTURES = REPO / "tests" / "fixtures" / "observability"
MARKER = "obs-boom-7431"
ALERT_TIMEOUT_S = 90
DAG_TIMEOUT_S = 180


def _place(stack, name: str) -> None:
    """Drop a fixture DAG into the stack's folder, readable by the service user."""
    dest = stack.home / "dags" / name
    shutil.copy(FIXTURES / name, dest)
    dest.chmod(0o644)


def _chown_like(path: Path, like: Path) -> None:
    """Files the test writes into the stack's folders belong to the service user, as Airflow's would."""
    st = like.stat()
    os.chown(path, st.st_uid, st.st_gid)


def _json(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


def _warm_execution_api(stack) -> None:
    """Airflow builds its versioned Execution API (Cadwyn) in each api-server worker at the first request to
    it: measured 41 s on this loaded 2-core machine, during which that worker answers nothing, so the first
    task of a fresh stack would stall the REST calls of the test. Touch it in every worker first."""
    import requests
    from concurrent.futures import ThreadPoolExecutor

    def touch(_):
        return requests.get(f"{stack.api}/execution/health", timeout=300).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert set(pool.map(touch, range(6))) == {200}


@pytest.fixture(scope="module")
def failed_run(running_stack):
    """obs_fail run once to failure; (run_id, task instance of `explode`)."""
    for name in ("obs_fail.py", "obs_slow.py", "obs_deadline.py"):
        _place(running_stack, name)
    _warm_execution_api(running_stack)
    run_id, run = _run_dag(running_stack, "obs_fail")
    assert run["state"] == "failed", run
    ti = running_stack.rest("GET", f"/dags/obs_fail/dagRuns/{run_id}/taskInstances/explode").json()
    assert ti["state"] == "failed" and ti["try_number"] == 1, ti
    return run_id, ti


# ---------------------------------------------------------------- logs search

def test_search_finds_the_line_a_failing_task_wrote_with_its_context(running_stack, failed_run):
    run_id, _ti = failed_run
    proc = running_stack.cli("logs", "search", MARKER, "--format", "json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    found = _json(proc)
    mine = [m for m in found["matches"] if m["run_id"] == run_id]
    assert mine, found
    m = mine[0]
    assert (m["dag_id"], m["task_id"], m["try_number"], m["map_index"]) == ("obs_fail", "explode", 1, -1)
    assert "ValueError: " + MARKER in m["text"]
    assert Path(m["file"]).is_file() and m["file"].startswith(str(running_stack.home / "logs" / "tasks"))
    assert found["files_searched"] >= 1


def test_search_text_output_names_dag_run_task_and_try(running_stack, failed_run):
    run_id, _ti = failed_run
    proc = running_stack.cli("logs", "search", "obs-marker-\\d+", "--dag", "obs_fail", "--run", run_id, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"obs_fail / {run_id} / explode / try 1" in proc.stdout
    assert "about to fail: obs-marker-7431" in proc.stdout


def test_search_filters_by_state_from_the_rest_api(running_stack, failed_run):
    run_id, _ti = failed_run
    failed = running_stack.cli("logs", "search", MARKER, "--state", "failed", "--format", "json", timeout=60)
    assert failed.returncode == 0, failed.stderr
    assert {m["run_id"] for m in _json(failed)["matches"]} >= {run_id}
    success = running_stack.cli("logs", "search", MARKER, "--state", "success", "--format", "json", timeout=60)
    assert success.returncode == 2, success.stdout + success.stderr
    assert _json(success)["matches"] == []


def test_search_since_leaves_out_older_logs(running_stack, failed_run):
    recent = running_stack.cli("logs", "search", MARKER, "--since", "2h", "--format", "json", timeout=60)
    assert recent.returncode == 0 and _json(recent)["matches"], recent.stderr
    future = running_stack.cli("logs", "search", MARKER, "--since", "2999-01-01T00:00", timeout=60)
    assert future.returncode == 2, future.stdout + future.stderr


def test_search_component_logs(running_stack, failed_run):
    proc = running_stack.cli("logs", "search", "obs_fail", "--component", "all", "--format", "json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    found = _json(proc)["matches"]
    assert found and all({"component", "file", "line", "text"} <= m.keys() for m in found)
    assert all("obs_fail" in m["text"] for m in found)


@pytest.mark.parametrize("args, code, message", [
    (["logs", "search", "obs(", "--dag", "obs_fail"], 1, "bad regular expression"),
    (["logs", "search", "x", "--since", "yesterday"], 1, "--since 'yesterday'"),
    (["logs", "search", "x", "--dag", "no_such_dag"], 2, "no task logs for DAG 'no_such_dag'"),
    (["logs", "search", "x", "--dag", "obs_fail", "--run", "no_such_run"], 2, "no task logs for run 'no_such_run'"),
    (["logs", "search", "x", "--state", "exploded"], 1, "not a task instance state"),
    (["logs", "search", "x", "--component", "no-such-component"], 1, "no log for component"),
    (["logs", "search"], 1, "logs search takes one PATTERN"),
    (["logs", "task", "obs_fail"], 1, "logs task takes DAG RUN TASK"),
])
def test_bad_input_is_a_clear_error(running_stack, failed_run, args, code, message):
    proc = running_stack.cli(*args, timeout=60)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- logs task

def test_task_log_of_a_finished_try(running_stack, failed_run):
    run_id, _ti = failed_run
    proc = running_stack.cli("logs", "task", "obs_fail", run_id, "explode", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "about to fail: obs-marker-7431" in proc.stdout
    assert f"ValueError: {MARKER}" in proc.stdout
    assert '"event"' not in proc.stdout  # rendered, not raw JSON lines


@pytest.mark.parametrize("which, message", [
    ({"dag": "no_such_dag"}, "no DAG named 'no_such_dag'"),
    ({"run": "no_such_run"}, "has no run 'no_such_run'"),
    ({"task": "no_such_task"}, "has no task 'no_such_task'"),
    ({"try": "7"}, "there is no try 7"),
])
def test_task_log_unknown_dag_run_task_or_try(running_stack, failed_run, which, message):
    run_id, _ti = failed_run
    args = ["logs", "task", which.get("dag", "obs_fail"), which.get("run", run_id), which.get("task", "explode")]
    if "try" in which:
        args += ["--try", which["try"]]
    proc = running_stack.cli(*args, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr


def test_task_log_follow_streams_while_the_task_runs(running_stack, failed_run):
    stack = running_stack
    stack.wait_for(lambda: stack.rest("GET", "/dags/obs_slow").status_code == 200, 120, "obs_slow to be parsed")
    assert stack.rest("PATCH", "/dags/obs_slow", json={"is_paused": False}).status_code == 200
    run_id = stack.rest("POST", "/dags/obs_slow/dagRuns", json={"logical_date": None}).json()["dag_run_id"]
    ti_path = f"/dags/obs_slow/dagRuns/{run_id}/taskInstances/tick"
    stack.wait_for(lambda: stack.rest("GET", ti_path).status_code == 200, 60, "the task instance to exist")
    follow = subprocess.Popen([sys.executable, "-m", "airflow_resource", "logs", "task", "obs_slow", run_id, "tick",
                               "--follow"], env=stack.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        state_at_first_line = None
        lines = []
        assert follow.stdout is not None
        for line in follow.stdout:
            lines.append(line)
            if "obs-tick 1" in line and state_at_first_line is None:
                state_at_first_line = stack.rest("GET", ti_path).json()["state"]
        rc = follow.wait(timeout=DAG_TIMEOUT_S)
    finally:
        if follow.poll() is None:
            follow.kill()
    text = "".join(lines)
    # The first line was printed while the task was still running: streamed, not read afterwards.
    assert state_at_first_line == "running", (state_at_first_line, text)
    assert rc == 0, text + (follow.stderr.read() if follow.stderr else "")
    assert [f"obs-tick {i}" in text for i in range(1, 21)] == [True] * 20 and "obs-tick done" in text
    assert stack.rest("GET", ti_path).json()["state"] == "success"


# ---------------------------------------------------------------- alerts

def test_failed_task_alert_is_posted_with_context_after_a_retry(running_stack, webhook_receiver, failed_run):
    run_id, _ti = failed_run
    got = running_stack.wait_for(
        lambda: webhook_receiver.delivered("task_failed", dag_id="obs_fail", run_id=run_id),
        ALERT_TIMEOUT_S, "the task_failed alert", poll=1)
    body = got[0][1]
    assert (body["task_id"], body["try_number"], body["map_index"], body["state"]) == ("explode", 1, -1, "failed")
    assert MARKER in body["error"] and MARKER in body["log_excerpt"]
    assert "about to fail: obs-marker-7431" in body["log_excerpt"]
    api = running_stack.api
    assert body["ui_url"].startswith(f"{api}/dags/obs_fail/runs/") and "/tasks/explode?try_number=1" in body["ui_url"]
    assert body["text"].startswith("Airflow task failed: obs_fail.explode") and body["resource"] == "apache-airflow"
    # The receiver refused the very first alert it got; that one was delivered anyway, on a later attempt.
    first_time, first_status, first = webhook_receiver.posts[0]
    assert first_status == 500
    retried = [d for t, status, d in webhook_receiver.posts[1:]
               if status == 200 and (d["event"], d.get("run_id"), d.get("task_id")) ==
               (first["event"], first.get("run_id"), first.get("task_id"))]
    assert retried, webhook_receiver.posts
    sent = list((running_stack.home / "alerts" / "sent").glob("*.json"))
    assert any(json.loads(p.read_text())["attempts"] >= 2 for p in sent)
    from datetime import datetime

    failed_at = datetime.fromisoformat(body["occurred_at"].replace("Z", "+00:00")).timestamp()
    print(f"\nwebhook delivery, failure (listener) -> POST received: first alert (one refused POST and a retry) "
          f"{got[0][0] - failed_at:.1f} s")


def test_failed_dag_run_alert(running_stack, webhook_receiver, failed_run):
    run_id, _ti = failed_run
    got = running_stack.wait_for(
        lambda: webhook_receiver.delivered("dag_run_failed", dag_id="obs_fail", run_id=run_id),
        ALERT_TIMEOUT_S, "the dag_run_failed alert", poll=1)
    assert got[0][1]["ui_url"].endswith(f"/dags/obs_fail/runs/{run_id.replace(':', '%3A').replace('+', '%2B')}")


def test_missed_deadline_alert(running_stack, webhook_receiver, failed_run):
    stack = running_stack
    stack.wait_for(lambda: stack.rest("GET", "/dags/obs_deadline").status_code == 200, 120, "obs_deadline parsed")
    assert stack.rest("PATCH", "/dags/obs_deadline", json={"is_paused": False}).status_code == 200
    run_id = stack.rest("POST", "/dags/obs_deadline/dagRuns", json={"logical_date": None}).json()["dag_run_id"]
    got = stack.wait_for(lambda: webhook_receiver.delivered("deadline_missed", dag_id="obs_deadline", run_id=run_id),
                         ALERT_TIMEOUT_S, "the deadline_missed alert", poll=1)
    body = got[0][1]
    assert body["deadline_time"] and body["text"].startswith("Airflow DAG run missed its deadline: obs_deadline")
    from datetime import datetime

    failed_at = datetime.fromisoformat(body["occurred_at"].replace("Z", "+00:00")).timestamp()
    print(f"\nwebhook delivery, missed deadline (callback) -> POST received: {got[0][0] - failed_at:.1f} s")


def test_webhook_url_is_on_no_command_line_and_in_no_log(running_stack, webhook_receiver, failed_run):
    import psutil

    secret = "test-secret-token"
    assert secret in webhook_receiver.url
    assert not [p.pid for p in psutil.process_iter(["cmdline"]) if secret in " ".join(p.info["cmdline"] or [])]
    for log in (running_stack.home / "logs").rglob("*.log"):
        assert secret not in log.read_text(errors="replace"), log
    assert (running_stack.home / "run" / "effective.json").stat().st_mode & 0o777 == 0o600
    refused = running_stack.cli("status", "--set", f"alert_webhook_url={webhook_receiver.url}", timeout=30)
    assert refused.returncode == 1 and "not taken from a command line" in refused.stderr


# ---------------------------------------------------------------- retention

def test_housekeeper_removes_logs_older_than_the_retention_and_their_empty_folders(running_stack):
    tasks = running_stack.home / "logs" / "tasks"
    processor = running_stack.home / "logs" / "dag_processor"
    old_day = time.time() - 40 * 86400  # the default retention is 30 days
    made = []
    processor.mkdir(exist_ok=True)  # the DAG processor makes it at its first log
    for root, rel in ((tasks, "dag_id=obs_old/run_id=r1/task_id=t/attempt=1.log"),
                      (tasks, "dag_id=obs_keep/run_id=r1/task_id=old/attempt=1.log"),
                      (tasks, "dag_id=obs_keep/run_id=r1/task_id=new/attempt=1.log"),
                      (processor, "2026-01-01/dags-folder/obs_old.py.log")):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"timestamp": "2026-01-01T00:00:00Z", "event": "old line"}\n')
        made.append(path)
    for path in made:
        d = path
        while d != tasks.parent:  # the file and the folders the test made (dag_processor/ too)
            _chown_like(d, tasks)
            d = d.parent
    for path in made[:2] + made[3:]:
        os.utime(path, (old_day, old_day))
    # The housekeeper cleans at its start (and hourly): restart it through supervisord.
    from airflow_resource.stack import supervisor

    rpc = supervisor.client(running_stack.home / "run" / "supervisord.sock").supervisor
    rpc.stopProcess("housekeeper", True)
    rpc.startProcess("housekeeper", True)
    running_stack.wait_for(lambda: not made[0].exists() and not made[3].exists(), 60, "the old logs to go")
    assert not (tasks / "dag_id=obs_old").exists()                      # emptied folders go too
    assert not made[1].exists() and not made[1].parent.exists()
    assert made[2].exists()                                            # a fresh log stays, with its folders
    assert tasks.is_dir() and processor.is_dir()
    log = (running_stack.home / "logs" / "components" / "housekeeper.log").read_text()
    assert "log retention (30 d): removed" in log


# ---------------------------------------------------------------- status --verbose

def test_status_verbose_shows_queue_task_counts_import_errors_and_last_failures(running_stack, failed_run):
    run_id, _ti = failed_run
    broken = running_stack.home / "dags" / "obs_broken.py"
    # Airflow parses only files that mention both "airflow" and "dag" (dag_discovery_safe_mode).
    broken.write_text("from airflow.sdk import DAG\nimport no_such_module_obs\n")
    broken.chmod(0o644)
    try:
        def with_import_error():
            report = _json(running_stack.cli("status", "--verbose", "--format", "json", timeout=60))
            errors = report["pipelines"]["import_errors"]
            return report if any("obs_broken.py" in e["file"] for e in errors["errors"]) else None

        report = running_stack.wait_for(with_import_error, 120, "the import error in status", poll=3)
    finally:
        broken.unlink()
    p = report["pipelines"]
    assert "errors" not in p, p
    assert set(p["queue_depth"]) == {"default"} and p["queue_depth"]["default"] >= 0
    assert set(p["task_instances"]) == {"running", "queued", "scheduled", "deferred", "up_for_retry"}
    assert all(isinstance(n, int) and n >= 0 for n in p["task_instances"].values())
    assert p["import_errors"]["count"] >= 1
    assert any("no_such_module_obs" in e["error"] for e in p["import_errors"]["errors"])
    assert any((f["dag_id"], f["run_id"], f["task_id"]) == ("obs_fail", run_id, "explode") for f in p["last_failures"])
    text = running_stack.cli("status", "--verbose", timeout=60)
    assert "queue depth (Celery, waiting): default" in text.stdout
    assert "last failed tasks:" in text.stdout and f"./cli.sh logs task obs_fail {run_id} explode" in text.stdout
    plain = _json(running_stack.cli("status", "--format", "json", timeout=60))
    assert "pipelines" not in plain  # plain status stays fast: no REST calls
