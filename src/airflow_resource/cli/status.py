"""`./cli.sh status`: the health report, as JSON, YAML or a table with the pipelines and the disks."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_resource import printer
from airflow_resource.cli.common import settings
from airflow_resource.errors import EXIT_ALREADY, EXIT_ERROR

_HEALTH = {"healthy": printer.markup("[green]healthy[/]"), "unhealthy": printer.markup("[red]unhealthy[/]"),
           "down": printer.markup("[red]down[/]")}
_DISK_COLOUR = {"ok": "green", "warning": "yellow", "critical": "red"}


def cmd_status(args: argparse.Namespace) -> int:
    from airflow_resource.stack import health as stack_health

    s = settings(args, running=True)
    report = stack_health.status(s, verbose=args.verbose)
    if args.format == "json":
        printer.emit_json(report)
    elif args.format == "yaml":
        import yaml  # shipped with Airflow

        print(yaml.safe_dump(report, sort_keys=False))
    elif not report["running"]:
        printer.info("apache-airflow is not running ({}); start it with: `./cli.sh manage start`", s.home)
    else:
        _print_components(report, args.verbose, stack_health.GIVEN_UP)
    if args.format not in ("json", "yaml"):
        print_disk(report["disk"], args.verbose)
        print_drift(report.get("layout_drift"))
        for warning in report.get("security_warnings", []):
            printer.warn(warning)
    if not report["running"]:  # the report is the answer: printed, then exit 2 (errors.py)
        return EXIT_ALREADY
    return 0 if report["healthy"] else EXIT_ERROR


def print_drift(drift: list[dict[str, str]] | None) -> None:
    """--verbose: each path of the home whose owner or mode drifted from the layout table."""
    if drift is None:
        return
    if not drift:
        printer.ok("home layout: every owner and mode as the table says (docs/architecture.md)")
        return
    printer.warn(f"home layout: {len(drift)} path(s) drifted from the table (docs/architecture.md); "
                 "`./cli.sh manage restart` repairs them")
    for d in drift:
        printer.info("  {}: {} (want {})", d["path"], d["problem"], d["want"])


def _print_components(report: dict[str, Any], verbose: bool, given_up: Any) -> None:
    rows = []
    for c in report["components"]:
        health = "healthy" if c["healthy"] else ("unhealthy" if c["running"] else "down")
        row = [c["name"], c["state"].lower(), _HEALTH[health], c["pid"] or "-", c["port"] or "-",
               duration(c["uptime_s"])]
        if verbose:
            row.append(c["detail"] if c["healthy"] else (c["last_error"] or c["detail"]))
        rows.append(row)
    cols = ["component", "state", "health", "pid", "port", "uptime"] + (["detail"] if verbose else [])
    overall = ("healthy" if report["healthy"] else "UNHEALTHY") + (", DEGRADED" if report["degraded"] else "")
    printer.table(cols, rows, title=f"apache-airflow {report['airflow_version']} (pinned set "
                  f"{report['pinned_set']}, profile {report.get('profile', 'balanced')}): {overall}  ({report['ui']})")
    if not verbose and not report["healthy"]:
        for c in report["components"]:
            if not c["healthy"]:
                printer.info("  {}: {}", c["name"], c["last_error"] or c["detail"])
    if any(c["state"] in given_up for c in report["components"]):
        printer.info("  → supervisord gave up restarting the components shown fatal; once the cause is fixed, "
                     "`./cli.sh manage start` starts them again")
    if "pipelines" in report:
        print_pipelines(report["pipelines"])


def print_disk(disk: dict[str, Any], verbose: bool) -> None:
    """One line per file system (only the low ones unless verbose), then what to do about it."""
    for fs in disk["filesystems"]:
        if fs["level"] != "ok" or verbose:
            colour = _DISK_COLOUR[fs["level"]]
            printer.info(f"disk [{colour}]{{}}[/]: {{}} MB free of {{}} MB ({{}} %) for {{}} "
                         "[dim](warning below {} %, critical below {} MB)[/]",
                         fs["level"], f"{fs['free_mb']:,}", f"{fs['total_mb']:,}", fs["free_percent"],
                         ", ".join(fs["paths"]), disk["warn_percent"], disk["critical_mb"])
    if disk.get("advice"):
        printer.info("  → {}", disk["advice"])


def print_pipelines(p: dict[str, Any]) -> None:
    """Queue depth, task instance counts, import errors and the last failed tasks (with their log command)."""
    if p.get("error"):
        printer.info("[red]pipelines: {}[/]", p["error"])
    queues = p.get("queue_depth")
    depth = ", ".join(f"{q} {n}" for q, n in queues.items()) if queues else "unknown"
    tis = p.get("task_instances") or {}
    counts = ", ".join(f"{n} {st.replace('_', ' ')}" for st, n in tis.items() if n is not None) or "unknown"
    printer.info("queue depth (Celery, waiting): {}", depth)
    printer.info("task instances: {}", counts)
    imports = p.get("import_errors") or {}
    printer.info("DAG import errors: {}", imports.get("count", "unknown"))
    for e in imports.get("errors", []):
        printer.info("  [red]{}[/]: {}", e["file"], e["error"])
    failures = p.get("last_failures")
    if failures:
        printer.info("last failed tasks:")
        for f in failures:
            mapped = f.get("map_index", -1) >= 0
            task = f["task_id"] + (f"[{f['map_index']}]" if mapped else "")
            printer.info("  {}  {} / {} / {} / try {}", str(f.get("end_date") or "-")[:19], f["dag_id"],
                         f["run_id"], task, f.get("try_number"))
            printer.info("    [dim]./cli.sh logs task {} {} {}{}[/]", f["dag_id"], f["run_id"], f["task_id"],
                         f" --map-index {f['map_index']}" if mapped else "")
    elif failures is not None:
        printer.info("last failed tasks: none")
    for what, err in (p.get("errors") or {}).items():
        printer.info("[yellow]{}: {}[/]", what, err)


def duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    h, rem = divmod(int(seconds), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")
