"""`./cli.sh audit`: Airflow's event log (/api/v2/eventLogs) filtered, newest N in time order.

The REST API's own filters do the work (Airflow 3.3.2, core_api/routes/public/event_logs.py): `after`
and `before` (the row's time), `owner`, `dag_id`, `event` (exact) or `event_prefix_pattern` (an event
given as `resource.*`), ordered by `-id` and cut at `limit`.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from airflow_resource import printer
from airflow_resource.api import AirflowAPI
from airflow_resource.config.settings import Settings
from airflow_resource.errors import CommandError
from airflow_resource.logs import tasklogs

PAGE = 100
MAX_LIMIT = 10000
EXTRA_CHARS = 120


def _time(value: str, flag: str) -> str:
    try:
        epoch = tasklogs.parse_since(value)
    except ValueError:
        raise CommandError(f"{flag} {value!r}: expected a duration like 30m, 2h, 3d, 1w or an ISO time like "
                           "2026-11-25T08:00 (UTC)", f"e.g. `./cli.sh audit {flag} 2h`") from None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def params(since: str | None, until: str | None, user: str | None, dag: str | None,
           event: str | None) -> dict[str, Any]:
    """The query of /api/v2/eventLogs for the command's filters."""
    p: dict[str, Any] = {"order_by": "-id"}
    if since:
        p["after"] = _time(since, "--since")
    if until:
        p["before"] = _time(until, "--until")
    if since and until and p["after"] >= p["before"]:
        raise CommandError(f"--since {since} is not before --until {until}", "give a --since older than --until")
    if user:
        p["owner"] = user
    if dag:
        p["dag_id"] = dag
    if event:
        if event.endswith("*"):
            if not event[:-1]:
                raise CommandError("--event '*' matches every event", "leave --event out to see every event")
            p["event_prefix_pattern"] = event[:-1]
        else:
            p["event"] = event
    return p


def fetch(api: AirflowAPI, query: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """The newest `limit` rows matching, oldest first."""
    rows: list[dict[str, Any]] = []
    while len(rows) < limit:
        batch = api.get("/eventLogs", params={**query, "limit": min(PAGE, limit - len(rows)), "offset": len(rows)})
        items = batch.get("event_logs", [])
        rows += items
        if not items or len(rows) >= batch.get("total_entries", 0):
            break
    return [shape(r) for r in reversed(rows)]


def shape(r: dict[str, Any]) -> dict[str, Any]:
    """One row for the output: the REST fields, `extra` parsed when it is JSON."""
    extra: Any = r.get("extra")
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            pass
    return {"id": r.get("event_log_id"), "when": r.get("when"), "event": r.get("event"), "user": r.get("owner"),
            "dag_id": r.get("dag_id"), "task_id": r.get("task_id"), "run_id": r.get("run_id"),
            "try_number": r.get("try_number"), "extra": extra}


def _extra_text(extra: Any) -> str:
    if extra in (None, "", {}):
        return ""
    if isinstance(extra, dict):
        # what the row says, not who: user, uid and host are the row's own columns or the same on each row
        shown = {k: v for k, v in extra.items() if k not in ("user", "uid", "host", "source")}
        text = " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in sorted(shown.items()))
    else:
        text = str(extra)
    return text if len(text) <= EXTRA_CHARS else text[:EXTRA_CHARS - 1] + "…"


def show(s: Settings, fmt: str, since: str | None, until: str | None, user: str | None, dag: str | None,
         event: str | None, limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise CommandError(f"--limit {limit} is out of range", f"give 1..{MAX_LIMIT}")
    query = params(since, until, user, dag, event)
    rows = fetch(AirflowAPI.for_stack(s), query, limit)
    if fmt == "json":
        printer.emit_json(rows)
        return 0
    if not rows:
        printer.info("no event matches")
        return 0
    printer.table(["when (UTC)", "event", "user", "dag / task", "details"],
                  [[(r["when"] or "")[:19].replace("T", " "), r["event"], r["user"] or "",
                    "/".join(x for x in (r["dag_id"], r["task_id"]) if x), _extra_text(r["extra"])] for r in rows],
                  title=f"event log: {len(rows)} event(s), oldest first")
    return 0
