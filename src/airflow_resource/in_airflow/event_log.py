"""Rows in Airflow's event log (the `log` table /api/v2/eventLogs and `audit` read) from inside the
api-server: the resource's middlewares record failed logins and refused requests here, through
Airflow's own Log model and session (the api-server's metadata DSN), off the event loop."""

from __future__ import annotations

import datetime
import json
import logging
import re
from typing import Any

log = logging.getLogger(__name__)
NAME_CHARS = 100  # a user name or a token claim, as a row keeps it
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean(value: Any, limit: int = NAME_CHARS) -> str:
    """A client's text (a name tried, a claim, a path), as a row may hold it: no control characters, cut."""
    return _CONTROL.sub("?", str(value))[:limit]


def write_event(event: str, owner: str, extra: dict[str, Any], when: datetime.datetime | None = None) -> None:
    """One row (at `when`, else now); an error is logged, never raised: recording must not break the
    request it describes."""
    from airflow.models.log import Log
    from airflow.utils.session import create_session

    try:
        with create_session() as session:
            row = Log(event=event, owner=owner or None, owner_display_name=owner or None,
                      extra=json.dumps(extra, sort_keys=True))
            if when is not None:
                row.dttm = when
            session.add(row)
    except Exception:  # noqa: BLE001
        log.warning("apache-airflow resource: could not record %s in the event log", event, exc_info=True)


async def in_thread(func: Any, *args: Any) -> Any:
    """`func(*args)` in the loop's default executor, so the event loop does not wait on the database."""
    import asyncio

    try:
        return await asyncio.get_running_loop().run_in_executor(None, func, *args)
    except Exception:  # noqa: BLE001
        log.warning("apache-airflow resource: could not record an event", exc_info=True)
        return None
