"""retention.clean on real files aged with os.utime: old files and the folders they leave empty go."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from airflow_resource.daemons import retention

pytestmark = pytest.mark.unit

NOW = time.time()
DAY = 86400


def make(path: Path, age_days: float, text: str = "x" * 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    t = NOW - age_days * DAY
    os.utime(path, (t, t))
    return path


def test_removes_only_files_older_than_the_retention_and_emptied_folders(tmp_path):
    tasks = tmp_path / "tasks"
    old = make(tasks / "dag_id=a/run_id=r/task_id=t/attempt=1.log", 31)
    old_mapped = make(tasks / "dag_id=a/run_id=r/task_id=m/map_index=0/attempt=1.log", 45)
    keep = make(tasks / "dag_id=a/run_id=r2/task_id=t/attempt=1.log", 29)
    report = retention.clean([tasks], 30, now=NOW)
    assert not old.exists() and not old_mapped.exists() and keep.exists()
    assert not (tasks / "dag_id=a/run_id=r").exists()        # emptied, all the way up
    assert (tasks / "dag_id=a/run_id=r2/task_id=t").is_dir()  # still holds a log
    assert tasks.is_dir()                                     # the root stays, even when empty
    assert (report.files, report.bytes, report.dirs) == (2, 20, 4)
    assert not report.errors and "removed 2 file(s)" in str(report)


def test_a_root_left_empty_stays(tmp_path):
    root = tmp_path / "dag_processor"
    make(root / "2026-01-01/dags-folder/etl.py.log", 60)
    retention.clean([root], 30, now=NOW)
    assert root.is_dir() and list(root.iterdir()) == []


def test_zero_days_keeps_everything(tmp_path):
    old = make(tmp_path / "dag_id=a/run_id=r/task_id=t/attempt=1.log", 4000)
    assert retention.clean([tmp_path], 0, now=NOW).files == 0
    assert old.exists()


def test_a_fresh_empty_folder_is_kept_an_old_empty_one_goes(tmp_path):
    fresh = tmp_path / "dag_id=a/run_id=new/task_id=t"  # a task just made it for its first line
    fresh.mkdir(parents=True)
    stale = tmp_path / "dag_id=b/run_id=old/task_id=t"
    stale.mkdir(parents=True)
    for d in (stale, stale.parent, stale.parent.parent):
        os.utime(d, (NOW - 40 * DAY, NOW - 40 * DAY))
    retention.clean([tmp_path], 30, now=NOW)
    assert fresh.is_dir() and not stale.exists()


def test_symlinks_are_never_followed_or_removed(tmp_path):
    outside = make(tmp_path / "outside" / "precious.log", 100)
    root = tmp_path / "dag_processor"
    root.mkdir()
    link = root / "latest"
    link.symlink_to(outside.parent)
    os.utime(link, (NOW - 100 * DAY, NOW - 100 * DAY), follow_symlinks=False)
    retention.clean([root], 30, now=NOW)
    assert outside.exists() and link.is_symlink()


def test_missing_roots_are_fine(tmp_path):
    assert retention.clean([tmp_path / "nope"], 30, now=NOW).files == 0
