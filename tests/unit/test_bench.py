"""bench: the table beside the standalone baseline, and the ratio column."""

from __future__ import annotations

import pytest

from airflow_resource.bench import report as bench
from airflow_resource.bench.report import ratio
from airflow_resource.errors import CommandError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("ours, theirs, want", [(0.5, 2.0, "4.0x"), (10, 5, "0.5x"), (0, 3, ""),
                                                ("not finished", 3, ""), (2, "not finished: 3 task(s) done", "")])
def test_ratio_is_theirs_over_ours(ours, theirs, want):
    assert ratio(ours, theirs) == want


def test_table_pairs_figures_with_the_baseline(capsys):
    fig = lambda v, unit="s": {"value": v, "unit": unit, "goal": ""}  # noqa: E731
    bench._print_table({
        "machine": {"cores": 2, "date": "2026-11-25"},
        "figures": {"one-task trigger to success p50": fig(0.5), "health endpoint p99": fig(9, "ms")},
        "baseline": {"one-task trigger to success p50": fig(2.0), "baseline error": fig("boom", "")},
    })
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "one-task" in line)
    assert "0.5" in row and "2.0" in row and "4.0x" in row
    assert "standalone/resource" in out
    assert "baseline error" in out and "boom" in out  # figures only the baseline has are kept


def test_table_without_baseline_has_no_ratio_column(capsys):
    bench._print_table({"machine": {"cores": 2, "date": "d"}, "figures": {"stop": {"value": 5.5, "unit": "s", "goal": ""}}})
    out = capsys.readouterr().out
    assert "stop" in out and "standalone" not in out


def test_only_takes_known_parts_in_any_order():
    from airflow_resource.bench import harness

    assert harness.parts(None) == harness.PARTS
    assert harness.parts("latency, idle") == ("latency", "idle")
    for bad in ("latency,turbo", ",", "starts;idle"):
        with pytest.raises(CommandError) as exc:
            harness.parts(bad)
        assert "choose from" in exc.value.hint


def test_ab_overrides_become_the_stacks_environment():
    from airflow_resource.bench import harness

    env = harness.stack_overrides({"profile": "quiet", "workers": "2"},
                                  ["AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY=64", "AIRFLOW__CORE__X=a=b"])
    assert env == {"APACHE_AIRFLOW_PROFILE": "quiet", "APACHE_AIRFLOW_WORKERS": "2",
                   "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": "64", "AIRFLOW__CORE__X": "a=b"}
    for bad in ("MAX_TIS=1", "AIRFLOW__SCHEDULER=1", "AIRFLOW__SCHEDULER__X"):
        with pytest.raises(CommandError):
            harness.stack_overrides({}, [bad])
