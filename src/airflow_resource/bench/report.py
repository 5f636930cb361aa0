"""The bench's output: a table of the figures (beside the baseline's, with their ratio) and the JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from airflow_resource import printer
from airflow_resource.errors import CommandError


def show(data: dict[str, Any], output: Path | None) -> None:
    """The table on the terminal; the figures as JSON in output (when given)."""
    _print_table(data)
    if output:
        try:
            output.write_text(json.dumps(data, indent=2) + "\n")
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror}",
                               "the figures are in the table above; choose another --output") from None
        printer.ok(f"wrote {output}")


def ratio(ours: Any, theirs: Any) -> str:
    """theirs / ours for figures where lower is better ('3.2x' = we are 3.2 times faster/smaller)."""
    try:
        return f"{float(theirs) / float(ours):.1f}x" if float(ours) > 0 else ""
    except (TypeError, ValueError):
        return ""


def _print_table(data: dict[str, Any]) -> None:
    machine, ours, theirs = data["machine"], data["figures"], data.get("baseline")
    title = f"apache-airflow resource benchmark, {machine['cores']} cores, {machine['date']}"
    if "load_at_start" in machine:
        title += f", load average {machine['load_at_start']} at start, {machine.get('load_at_end', '?')} at end"
    if machine.get("overrides"):
        title += ", with " + " ".join(f"{k}={v}" for k, v in machine["overrides"].items())
    if theirs is None:
        rows = [[k, v["value"], v["unit"], v["goal"]] for k, v in ours.items()]
        printer.table(["figure", "value", "unit", "goal"], rows, title=title)
        return
    rows = []
    for k, v in ours.items():
        other = theirs.get(k, {}).get("value", "")
        rows.append([k, v["value"], other, ratio(v["value"], other) if other != "" else "", v["unit"], v["goal"]])
    rows += [[k, "", v["value"], "", v["unit"], ""] for k, v in theirs.items() if k not in ours]
    printer.table(["figure", "resource", "standalone", "standalone/resource", "unit", "goal"], rows, title=title)
