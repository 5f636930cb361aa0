"""activity.read (status --verbose) against a fake REST API and broker: every figure, and a failing source
named in `errors` instead of failing the status."""

from __future__ import annotations

import pytest

from airflow_resource.stack import activity
from airflow_resource import cli
from airflow_resource.errors import CommandError

pytestmark = pytest.mark.unit

COUNTS = {"running": 3, "queued": 7, "scheduled": 0, "deferred": 1, "up_for_retry": 2}


class FakeAPI:
    fail_login = False
    fail_paths: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        pass

    def token(self):
        if self.fail_login:
            raise CommandError("the API at http://x does not answer")
        return "t"

    def get(self, path, params=None):
        if any(path.startswith(p) for p in self.fail_paths):
            raise CommandError(f"GET {path}: HTTP 500")
        if path == "/importErrors":
            return {"total_entries": 1, "import_errors": [
                {"filename": "/dags/bad.py", "timestamp": "t", "stack_trace": "Traceback\n  ...\nModuleNotFoundError: x"}]}
        if params.get("state") == "failed":
            return {"total_entries": 1, "task_instances": [
                {"dag_id": "etl", "dag_run_id": "r1", "task_id": "load", "map_index": 0, "try_number": 2,
                 "end_date": "2026-11-25T10:00:00Z"}]}
        return {"total_entries": COUNTS[params["state"]], "task_instances": []}


@pytest.fixture
def fake(monkeypatch, make_settings):
    from airflow_resource import api

    monkeypatch.setattr(api, "AirflowAPI", FakeAPI)
    monkeypatch.setattr(activity, "_queue_depth", lambda s, sec: {"default": 4})
    FakeAPI.fail_login, FakeAPI.fail_paths = False, ()
    return make_settings()


def test_reads_every_figure(fake, sec):
    p = activity.read(fake, sec)
    assert p["queue_depth"] == {"default": 4}
    assert p["task_instances"] == COUNTS
    assert p["import_errors"] == {"count": 1, "errors": [
        {"file": "/dags/bad.py", "timestamp": "t", "error": "ModuleNotFoundError: x"}]}
    assert p["last_failures"] == [{"dag_id": "etl", "run_id": "r1", "task_id": "load", "map_index": 0,
                                   "try_number": 2, "end_date": "2026-11-25T10:00:00Z"}]
    assert "errors" not in p


def test_a_failing_source_is_named_and_the_others_still_read(fake, sec):
    FakeAPI.fail_paths = ("/importErrors",)
    p = activity.read(fake, sec)
    assert p["import_errors"] is None and p["errors"] == {"import_errors": "GET /importErrors: HTTP 500"}
    assert p["task_instances"] == COUNTS


def test_an_api_that_does_not_answer_still_gives_the_queue(fake, sec):
    FakeAPI.fail_login = True
    assert activity.read(fake, sec) == {"error": "REST API: the API at http://x does not answer",
                                        "queue_depth": {"default": 4}}


def test_text_output(fake, sec, capsys):
    cli._print_pipelines(activity.read(fake, sec))
    out = capsys.readouterr().out
    assert "queue depth (Celery, waiting): default 4" in out
    assert "task instances: 3 running, 7 queued, 0 scheduled, 1 deferred, 2 up for retry" in out
    assert "DAG import errors: 1" in out and "/dags/bad.py: ModuleNotFoundError: x" in out
    assert "etl / r1 / load[0] / try 2" in out and "./cli.sh logs task etl r1 load --map-index 0" in out
