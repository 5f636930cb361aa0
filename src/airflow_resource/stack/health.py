"""Status: each component's supervisord state and a real probe, its last error, the disk; what
supervisord gave up on."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow_resource.config import tls
from airflow_resource.config.settings import Settings
from airflow_resource.in_airflow import diskspace
from airflow_resource.stack import disk as stack_disk
from airflow_resource.stack import components
from airflow_resource.stack import handle
from airflow_resource.stack import installer
from airflow_resource.stack import memlimit
from airflow_resource.stack import supervisor
from airflow_resource.stack.components import Component
from airflow_resource.stack.probes import ProbeContext

LOG_TAIL_BYTES = 64 * 1024
GIVEN_UP = supervisor.GIVEN_UP


def last_error(s: Settings, name: str) -> str | None:
    """The last line of a component's log that looks like an error."""
    path = s.component_logs_dir / f"{name}.log"
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if any(k in line for k in ("ERROR", "FATAL", "Error", "Traceback", "Exception", "refused")):
            return line.strip()[:300]
    return None


def layout_drift(s: Settings) -> list[dict[str, str]]:
    """Paths of the home whose owner or mode is not home_layout's table (`manage start` repairs them)."""
    from airflow_resource.errors import CommandError
    from airflow_resource.stack import home_layout

    if not s.home.exists():
        return []
    try:
        return home_layout.drift(s, home_layout.owners(s))
    except CommandError as exc:  # a user of the table does not exist yet
        return [{"path": str(s.home), "problem": exc.message, "want": exc.hint or ""}]


def probe(c: Component, ctx: ProbeContext, infos: dict[str, dict[str, Any]]) -> tuple[bool, str]:
    """A component's probe, told when supervisord started it (older heartbeats are a dead process's)."""
    return c.probe.check(ctx, infos.get(c.name, {}).get("start") or None)


def status(s: Settings, verbose: bool = False) -> dict[str, Any]:
    """Per-component state from supervisord plus a real probe, in parallel: answers in well under a second.
    verbose: also what the pipelines are doing (activity.py), read while the probes run."""
    disk = stack_disk.report(s)
    report: dict[str, Any] = {"resource": "apache-airflow", "home": str(s.home), "running": False,
                              "healthy": False, "degraded": disk["level"] != diskspace.OK,
                              "airflow_version": installer.home_airflow_version(s),
                              "pinned_set": installer.home_set(s).name, "ui": s.api_url,
                              "components": [], "disk": disk, "tls": s.tls_on, "profile": s.profile,
                              "security_warnings": [w for w in (tls.insecure_warning(s),) if w]}
    if verbose:
        report["layout_drift"] = layout_drift(s)
    if not handle.is_running(s):
        return report
    st = handle.Stack.load(s)
    infos = {i["name"]: i for i in st.rpc().getAllProcessInfo()}
    ctx = st.probe_context()
    now = time.time()
    with ThreadPoolExecutor(max_workers=len(st.comps) + 1) as pool:
        if verbose:
            from airflow_resource.stack import activity

            pipelines = pool.submit(activity.read, s, st.sec)
        # STARTING counts once its probe passes, as in the start: startsecs is a crash guard, not readiness
        # (right after `manage start` flower and the housekeeper are up but still STARTING for ~3 s).
        probes = list(pool.map(lambda c: probe(c, ctx, infos)
                               if infos.get(c.name, {}).get("statename") in supervisor.UP else (False, "not running"),
                               st.comps))
        if verbose:
            report["pipelines"] = pipelines.result()
    for c, (ok, detail) in zip(st.comps, probes):
        info = infos.get(c.name, {})
        running = info.get("statename") in supervisor.UP
        entry = {
            "name": c.name,
            "state": info.get("statename", "UNKNOWN"),
            "running": running,
            "healthy": bool(running and ok),
            "pid": info.get("pid") or None,
            "port": c.port,
            "uptime_s": round(now - info["start"]) if running and info.get("start") else None,
            "detail": detail,
            "last_error": None if (running and ok) else (last_error(s, c.name) or info.get("spawnerr") or None),
        }
        if running and c.name.startswith(components.WORKER_PREFIX):
            entry.update(memlimit.stats(s, info["pid"]) or {})  # memory_mb, memory_limit_mb, oom_kills
        report["components"].append(entry)
    report["running"] = any(e["running"] for e in report["components"])
    report["healthy"] = all(e["healthy"] for e in report["components"])
    return report
