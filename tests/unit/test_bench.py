"""bench: the table beside the standalone baseline, and the ratio column."""

from __future__ import annotations

import pytest

from airflow_resource.bench import report as bench
from airflow_resource.bench.report import ratio

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
