"""tasklogs: Airflow's log layout, record rendering, search (and its raw-text prefilter), --since parsing."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from airflow_resource.logs import reader as logs
from airflow_resource.logs import tasklogs
from airflow_resource.errors import CommandError

pytestmark = pytest.mark.unit

RUN = "manual__2026-11-25T10:00:00.123456+00:00"


def _rec(event, level="info", ts="2026-11-25T10:00:01.000000Z", **extra) -> str:
    return json.dumps({"timestamp": ts, "level": level, "event": event, **extra})


FAILURE = _rec("Task failed with exception", "error", error_detail=[{
    "exc_type": "ValueError", "exc_value": 'bad "value" \\ here', "frames": [
        {"filename": "/dags/etl.py", "lineno": 12, "name": "transform"}]}])


def write(root: Path, dag: str, run: str, task: str, try_number: int, lines: list[str], map_index: int = -1) -> Path:
    path = root / tasklogs.relative_path(dag, run, task, try_number, map_index)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_relative_path_is_airflows_default_template():
    assert tasklogs.relative_path("d", RUN, "t", 2) == f"dag_id=d/run_id={RUN}/task_id=t/attempt=2.log"
    assert tasklogs.relative_path("d", "r", "t", 1, 3) == "dag_id=d/run_id=r/task_id=t/map_index=3/attempt=1.log"


def test_find_lists_tries_mapped_and_trigger_parts_and_prunes_by_filter(tmp_path):
    write(tmp_path, "a", RUN, "t", 1, ["x"])
    write(tmp_path, "a", RUN, "t", 2, ["x"])
    write(tmp_path, "a", RUN, "m", 1, ["x"], map_index=0)
    write(tmp_path, "a", RUN, "m", 1, ["x"], map_index=1)
    trig = tmp_path / tasklogs.relative_path("a", RUN, "t", 2)
    trig.with_name(trig.name + ".trigger.7.log").write_text("y\n")
    write(tmp_path, "b", "r2", "t", 1, ["x"])
    (tmp_path / "dag_processor").mkdir()  # anything else in the folder is not a task log
    (tmp_path / "dag_id=a" / f"run_id={RUN}" / "task_id=t" / "notes.txt").write_text("n")
    found = sorted((f.dag_id, f.run_id, f.task_id, f.map_index, f.try_number, f.trigger)
                   for f in tasklogs.find(tmp_path))
    assert found == [("a", RUN, "m", 0, 1, False), ("a", RUN, "m", 1, 1, False), ("a", RUN, "t", -1, 1, False),
                     ("a", RUN, "t", -1, 2, False), ("a", RUN, "t", -1, 2, True), ("b", "r2", "t", -1, 1, False)]
    assert {f.dag_id for f in tasklogs.find(tmp_path, dag_id="b")} == {"b"}
    assert {f.task_id for f in tasklogs.find(tmp_path, task_id="m")} == {"m"}
    assert list(tasklogs.find(tmp_path, dag_id="nope")) == []


def test_find_passes_over_files_last_written_before_modified_after(tmp_path):
    old = write(tmp_path, "a", "r", "old", 1, ["x"])
    write(tmp_path, "a", "r", "new", 1, ["x"])
    past = time.time() - 7200
    import os

    os.utime(old, (past, past))
    assert [f.task_id for f in tasklogs.find(tmp_path, modified_after=time.time() - 3600)] == ["new"]


def test_render_shows_an_exception_as_python_prints_it():
    assert tasklogs.render(tasklogs.parse_line(FAILURE)) == [
        "2026-11-25T10:00:01.000000Z error Task failed with exception",
        '    File "/dags/etl.py", line 12, in transform',
        '  ValueError: bad "value" \\ here',
    ]
    assert tasklogs.render(tasklogs.parse_line("plain text line")) == ["plain text line"]
    assert tasklogs.render(tasklogs.parse_line('{"broken json')) == ['{"broken json']
    assert tasklogs.render({"event": {"rows": 3}}) == ['{"rows": 3}']


def test_search_gives_context_and_line_numbers(tmp_path):
    write(tmp_path, "etl", RUN, "transform", 2, [_rec("start"), FAILURE, _rec("end")], map_index=4)
    write(tmp_path, "etl", RUN, "load", 1, [_rec("fine")])
    matches, searched, cut = tasklogs.search(tasklogs.find(tmp_path), re.compile(r"ValueError: bad"))
    assert searched == 2 and not cut
    [m] = matches
    assert (m.dag_id, m.run_id, m.task_id, m.map_index, m.try_number, m.line) == ("etl", RUN, "transform", 4, 2, 2)
    assert m.text == '  ValueError: bad "value" \\ here' and m.level == "error"


def test_search_since_skips_older_lines_of_a_file(tmp_path):
    write(tmp_path, "d", "r", "t", 1, [_rec("needle old", ts="2026-11-25T08:00:00.000000Z"),
                                        _rec("needle new", ts="2026-11-25T10:00:00.000000+00:00"),
                                        "needle without a time"])
    since = tasklogs.parse_since("2026-11-25T09:00")
    matches, _n, _cut = tasklogs.search(tasklogs.find(tmp_path), re.compile("needle"), since)
    assert [m.text.split(" ", 2)[-1] if m.timestamp else m.text for m in matches] == ["needle new",
                                                                                       "needle without a time"]


def test_search_stops_at_the_limit(tmp_path):
    for i in range(5):
        write(tmp_path, "d", f"r{i}", "t", 1, [_rec("hit"), _rec("hit")])
    matches, _n, cut = tasklogs.search(tasklogs.find(tmp_path), re.compile("hit"), limit=3)
    assert len(matches) == 3 and cut


@pytest.mark.parametrize("pattern, piece", [
    ("ZeroDivisionError: division by zero", "ZeroDivisionError"),
    (r"batch [0-9]+ of pipeline_07", "pipeline_07"),
    (r"foo\.bar", r"foo\.bar"),
    ("a|b", None), ("ab", None), ("File", None), ("line 12", None), (r"(?i)hello", "hello"),
])
def test_required_piece(pattern, piece):
    got = tasklogs.required_piece(re.compile(pattern))
    assert (got.pattern if got else None) == piece
    if got is not None and "(?i)" in pattern:
        assert got.flags & re.IGNORECASE


PATTERNS = ["ValueError: bad", 'bad "value"', r"\\ here", "error Task failed", "File \"/dags/etl.py\", line 12",
            "line 12, in transform", "in transform", r"\d+ rows", "rows", "10:00:01", "Rows", "'rows': 3",
            '{"rows": 3}', "plain", "nothing like it", "é accent", "line", "transform$", "^  ValueError"]


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("flags", [0, re.IGNORECASE])
def test_prefilter_never_changes_what_is_found(tmp_path, pattern, flags):
    """The raw-text prefilter is an optimisation: with it and without it, the same lines match."""
    path = write(tmp_path, "d", "r", "t", 1, [FAILURE, _rec("12 rows loaded"), _rec({"rows": 3}),
                                               "plain é accent", _rec("café")])
    f = next(tasklogs.find(tmp_path))
    rx = re.compile(pattern, flags)
    assert path.exists()
    with_piece = tasklogs.search_file(f, rx, None, tasklogs.required_piece(rx))
    without = tasklogs.search_file(f, rx, None, None)
    assert with_piece == without


@pytest.mark.parametrize("value, seconds", [("90s", 90), ("15m", 900), ("2h", 7200), ("3d", 3 * 86400),
                                            ("1w", 7 * 86400), ("1.5h", 5400)])
def test_parse_since_durations(value, seconds):
    assert tasklogs.parse_since(value, now=1_000_000.0) == 1_000_000.0 - seconds


def test_parse_since_iso_is_utc_unless_it_says_otherwise():
    assert tasklogs.parse_since("2026-11-25T08:00") == tasklogs.parse_since("2026-11-25T08:00:00Z")
    assert tasklogs.parse_since("2026-11-25T10:00+02:00") == tasklogs.parse_since("2026-11-25T08:00Z")


@pytest.mark.parametrize("value", ["yesterday", "2x", "-3h", ""])
def test_parse_since_rejects_nonsense(value):
    with pytest.raises(ValueError, match="expected a duration"):
        tasklogs.parse_since(value)


def test_bad_pattern_is_a_command_error():
    with pytest.raises(CommandError, match="bad regular expression"):
        logs.compile_pattern("x(", False)


def test_component_log_search_covers_rotated_copies_oldest_first(tmp_path):
    (tmp_path / "scheduler.log.2").write_text("needle oldest\n")
    (tmp_path / "scheduler.log.1").write_text("other\nneedle older\n")
    (tmp_path / "scheduler.log").write_text("needle now\n")
    found = tasklogs.search_component_log(tmp_path / "scheduler.log", "scheduler", re.compile("needle"))
    assert [(Path(m["file"]).name, m["line"], m["text"]) for m in found] == [
        ("scheduler.log.2", 1, "needle oldest"), ("scheduler.log.1", 2, "needle older"), ("scheduler.log", 1, "needle now")]


def test_component_search_refuses_task_log_filters(make_settings):
    with pytest.raises(CommandError, match="--dag, --state select task logs"):
        logs.search(make_settings(), "x", dag="d", state="failed", components=["scheduler"])


def test_no_match_names_the_pattern_with_its_brackets(make_settings, capsys):
    s = make_settings()
    s.task_logs_dir.mkdir(parents=True)
    assert logs.search(s, "[abc]x+") == 2
    assert "no match for '[abc]x+' in 0 log file(s)" in capsys.readouterr().err


def test_a_planted_fifo_or_link_is_refused_without_blocking_and_skipped_by_search(tmp_path):
    """logs/tasks is the service user's: a task can plant a FIFO (a plain read as root would hang) or a link."""
    import os

    write(tmp_path, "d", "r", "good", 1, [_rec("needle here")])
    fifo = tmp_path / tasklogs.relative_path("d", "r", "fifo", 1)
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    link = tmp_path / tasklogs.relative_path("d", "r", "link", 1)
    link.parent.mkdir(parents=True)
    secret = tmp_path / "secret"
    secret.write_text(_rec("needle secret") + "\n")
    link.symlink_to(secret)
    for planted, what in ((fifo, "a FIFO"), (link, "a symlink")):
        with pytest.raises(CommandError, match=what):
            tasklogs.read_log(planted)
    matches, searched, _cut = tasklogs.search(tasklogs.find(tmp_path), re.compile("needle"))
    assert [m.task_id for m in matches] == ["good"] and searched >= 2
