"""Failure alerts, the housekeeper's half: POST each spooled record to the webhook, with retries.

Airflow's processes write the records (in_airflow/alerts.py: the spool, its folders and event names).
Each pass of the housekeeper takes every record in the outbox that has settled (the task's last log lines
are on disk by then), adds the log excerpt and the UI link, and POSTs it. An error (connection, timeout,
HTTP 408/425/429/5xx) is retried with growing back-off until GIVE_UP_S; the record then goes to `failed/`.
A delivered one goes to `sent/`.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from airflow_resource.in_airflow.alerts import DAG_RUN_FAILED, DEADLINE_MISSED, FAILED, OUTBOX, SENT, TASK_FAILED
from airflow_resource.logs import tasklogs

SETTLE_S = 2.0              # a task's supervisor writes its last log lines after the listener ran
POST_TIMEOUT_S = 10.0
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 300.0
GIVE_UP_S = 24 * 3600.0
EXCERPT_LINES = 40
EXCERPT_CHARS = 8000
RETRYABLE_HTTP = (408, 425, 429)


# ---------------------------------------------------------------- the payload

def ui_link(ui_base: str, record: dict[str, Any]) -> str:
    base = ui_base.rstrip("/")
    dag, run = quote(str(record.get("dag_id") or ""), safe=""), quote(str(record.get("run_id") or ""), safe="")
    if not record.get("run_id"):
        return f"{base}/dags/{dag}"
    url = f"{base}/dags/{dag}/runs/{run}"
    if record.get("task_id"):
        url += f"/tasks/{quote(str(record['task_id']), safe='')}"
        if _map_index(record) >= 0:
            url += f"/mapped/{record['map_index']}"
        if record.get("try_number"):
            url += f"?try_number={record['try_number']}"
    return url


def _map_index(record: dict[str, Any]) -> int:
    value = record.get("map_index")
    return -1 if value is None else int(value)


def log_excerpt(task_logs: Path, record: dict[str, Any], lines: int = EXCERPT_LINES) -> tuple[str, str | None]:
    """The last lines of the failed try's log, rendered; and its path. Empty when it is not on this machine."""
    if not record.get("task_id") or not record.get("try_number"):
        return "", None
    path = task_logs / tasklogs.relative_path(record["dag_id"], record["run_id"], record["task_id"],
                                              int(record["try_number"]), _map_index(record))
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 256 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return "", None
    rendered = tasklogs.render_text(text)[-lines:]
    return "\n".join(rendered)[-EXCERPT_CHARS:], str(path)


def summary(record: dict[str, Any]) -> str:
    event = record.get("event")
    if event == TASK_FAILED:
        task = record.get("task_id", "") + (f"[{record['map_index']}]" if _map_index(record) >= 0 else "")
        text = f"Airflow task failed: {record.get('dag_id')}.{task}, run {record.get('run_id')}, try {record.get('try_number')}"
        return text + (f": {record['error']}" if record.get("error") else "")
    if event == DAG_RUN_FAILED:
        return f"Airflow DAG run failed: {record.get('dag_id')}, run {record.get('run_id')}" + (
            f": {record['message']}" if record.get("message") else "")
    if event == DEADLINE_MISSED:
        return (f"Airflow DAG run missed its deadline: {record.get('dag_id')}, run {record.get('run_id')} "
                f"(deadline {record.get('deadline_time')}, state {record.get('state')})")
    return f"Airflow alert: {event}"


def payload(record: dict[str, Any], ui_base: str, task_logs: Path) -> dict[str, Any]:
    """What the webhook receives. `text` makes it readable as is by Slack/Mattermost-style webhooks."""
    excerpt, log_file = log_excerpt(task_logs, record) if record.get("event") == TASK_FAILED else ("", None)
    return {"resource": "apache-airflow", **record, "text": summary(record), "ui_url": ui_link(ui_base, record),
            "log_excerpt": excerpt, "log_file": log_file}


# ---------------------------------------------------------------- delivery

def redact(url: str) -> str:
    """A webhook URL as logs may show it: scheme and host only (paths and queries often hold tokens)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}/…"


# Loopback receivers must not go through a proxy from the environment; others may need one.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_DEFAULT = urllib.request.build_opener()


def post(url: str, body: dict[str, Any], timeout: float = POST_TIMEOUT_S) -> tuple[bool, bool, str]:
    """POST the JSON body: (delivered, worth retrying, what happened)."""
    req = urllib.request.Request(url, data=json.dumps(body, default=str).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "apache-airflow-resource"})
    host = urlsplit(url).hostname or ""
    opener = _DIRECT if host in ("localhost", "127.0.0.1", "::1") else _DEFAULT
    try:
        with opener.open(req, timeout=timeout) as resp:
            return True, False, f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return False, exc.code >= 500 or exc.code in RETRYABLE_HTTP, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, True, f"{type(reason).__name__}: {reason}"


def backoff(attempts: int) -> float:
    return min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** max(0, attempts - 1))


def deliver_due(spool_dir: Path, url: str, ui_base: str, task_logs: Path, log: Any = print,
                now: float | None = None) -> int:
    """One pass over the outbox: POST every record that is due. Returns how many were delivered."""
    outbox = spool_dir / OUTBOX
    try:
        names = sorted(n for n in os.listdir(outbox) if n.endswith(".json") and not n.startswith("."))
    except FileNotFoundError:
        return 0
    delivered = 0
    for name in names:
        now_ = time.time() if now is None else now
        path = outbox / name
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            log(f"alert {name}: unreadable ({exc}); moved to {FAILED}/")
            _move(path, spool_dir / FAILED)
            continue
        if now_ - entry.get("spooled_at", 0) < SETTLE_S or now_ < entry.get("next_try", 0):
            continue
        record = entry["record"]
        ok, retry, what = post(url, payload(record, ui_base, task_logs))
        entry["attempts"] = entry.get("attempts", 0) + 1
        entry["last_result"] = what
        if ok:
            entry["delivered_at"] = time.time()
            _write(path, entry)
            _move(path, spool_dir / SENT)
            delivered += 1
            log(f"alert {record['event']} {record.get('dag_id')}/{record.get('run_id')}/{record.get('task_id') or '-'} "
                f"delivered to {redact(url)} ({what}, attempt {entry['attempts']})")
        elif not retry or now_ - entry.get("spooled_at", now_) > GIVE_UP_S:
            _write(path, entry)
            _move(path, spool_dir / FAILED)
            log(f"alert {name}: giving up after {entry['attempts']} attempt(s) ({what}); kept in {FAILED}/")
        else:
            entry["next_try"] = now_ + backoff(entry["attempts"])
            _write(path, entry)
            log(f"alert {name}: {redact(url)} answered {what}; retry {entry['attempts'] + 1} "
                f"in {backoff(entry['attempts']):.0f} s")
    return delivered


def _write(path: Path, entry: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(entry, default=str))
    os.replace(tmp, path)


def _move(path: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.replace(path, folder / path.name)
