"""The stop's last step for tasks killed past the grace (shutdown.requeue_killed_tasks): a cheap count
first, Airflow's clear only when something was still running, and a clear message either way."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

from airflow_resource.stack import handle
from airflow_resource.stack import shutdown
from airflow_resource.stack import system

pytestmark = pytest.mark.unit


class FakeCursor:
    def __init__(self, count):
        self.count = count

    def execute(self, sql):
        assert "task_instance" in sql and "'running'" in sql

    def fetchone(self):
        return (self.count,)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class FakeConn(FakeCursor):
    def cursor(self):
        return FakeCursor(self.count)


@pytest.fixture
def st(make_settings, sec):
    return handle.Stack(make_settings(), sec, system.RunAs("airflow", 1000, 1000, "/tmp"), [])


def _fake_psycopg2(monkeypatch, count=None, error=None):
    def connect(dsn, connect_timeout):
        assert dsn.startswith("postgresql://") and connect_timeout == 5
        if error:
            raise error
        return FakeConn(count)

    monkeypatch.setitem(sys.modules, "psycopg2", types.SimpleNamespace(connect=connect))


def _airflow_answers(monkeypatch, stdout, returncode=0, calls=None):
    def run_airflow(self, args, timeout, extra_env=None, stdin=None):
        if calls is not None:
            calls.append((args, stdin))
        return subprocess.CompletedProcess(args, returncode, stdout, "boom" if returncode else "")

    monkeypatch.setattr(handle.Stack, "run_airflow", run_airflow)


def test_nothing_running_then_airflow_is_not_even_started(st, monkeypatch):
    _fake_psycopg2(monkeypatch, count=0)
    calls = []
    _airflow_answers(monkeypatch, "[]", calls=calls)
    assert shutdown.requeue_killed_tasks(st) == []
    assert calls == []


def test_killed_tasks_are_cleared_through_airflow_and_named(st, monkeypatch, capsys):
    _fake_psycopg2(monkeypatch, count=1)
    killed = [{"dag_id": "d", "run_id": "r1", "task_id": "t", "map_index": 3, "try_number": 1}]
    calls = []
    _airflow_answers(monkeypatch, "some log line\n" + json.dumps(killed) + "\n", calls=calls)
    assert shutdown.requeue_killed_tasks(st) == killed
    (args, source), = calls
    assert args[-1] == "-" and "clear_task_instances" in source  # the script goes on stdin, not argv
    err = capsys.readouterr()
    assert "d r1 t[3] try 1" in err.out + err.err and "queued again" in err.out + err.err


def test_a_failing_script_warns_and_loses_nothing(st, monkeypatch, capsys):
    _fake_psycopg2(monkeypatch, count=2)
    _airflow_answers(monkeypatch, "", returncode=1)
    assert shutdown.requeue_killed_tasks(st) == []
    err = capsys.readouterr()
    assert "heartbeat timeout" in err.out + err.err and "boom" in err.out + err.err


def test_an_unreachable_database_warns(st, monkeypatch, capsys):
    _fake_psycopg2(monkeypatch, error=OSError("connection refused"))
    calls = []
    _airflow_answers(monkeypatch, "[]", calls=calls)
    assert shutdown.requeue_killed_tasks(st) == [] and calls == []
    err = capsys.readouterr()
    assert "could not check" in err.out + err.err


def test_a_task_process_is_known_by_the_task_instance_id_in_its_title():
    from airflow_resource.standalone import requeue_tasks

    child = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(30)",
                              "01a2-ti-id"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "up\n"  # exec'd: its command line is its own, not the test's
        assert requeue_tasks._runs(child.pid)
        assert requeue_tasks._runs(child.pid, "01a2-ti-id")
        assert not requeue_tasks._runs(child.pid, "another-ti")  # a reused pid is not the task
        child.kill()
        child.wait()
        assert not requeue_tasks._runs(child.pid)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
