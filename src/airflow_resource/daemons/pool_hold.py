"""The housekeeper's pool hold: while the disk is nearly full, every Airflow pool is set to 0 slots, so
the scheduler queues no new task (running ones finish); once space is back, the pools get their slots
back (in_airflow/diskspace.py measures, daemons/housekeeper.py decides when).

The pools' own slots are kept in an Airflow Variable, in the metadata database, and put back from there:
the hold undoes itself, also after a crash of the housekeeper. Everything goes through the REST API
(airflow_resource.api.AirflowAPI, or anything with its get/post/patch/delete/paged).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

HOLD_VARIABLE = "apache_airflow_resource_disk_hold"  # {pool: slots} of the pools held at 0
HOLD_DESCRIPTION = ("Pool slots the apache-airflow resource holds at 0 while the disk is nearly full; "
                    "given back, and this variable removed, once space is freed. Do not edit.")


def hold_pools(api: Any) -> int:
    """Set every open pool to 0 slots, first saving its slots in the Airflow Variable HOLD_VARIABLE (in the
    metadata database, so a restarted housekeeper still knows them). Returns how many were held. The
    scheduler then queues no new task; running ones finish."""
    saved, existed = _held(api)
    pools = [p for p in _pools(api) if p["name"] not in saved and p["slots"] != 0]
    if not pools:
        return 0
    saved.update({p["name"]: p["slots"] for p in pools})
    body = {"key": HOLD_VARIABLE, "value": json.dumps(saved), "description": HOLD_DESCRIPTION}
    if existed:
        api.patch(f"/variables/{HOLD_VARIABLE}", body)
    else:
        api.post("/variables", body)
    for p in pools:
        _set_slots(api, p["name"], 0)
    return len(pools)


def release_pools(api: Any) -> int:
    """Give every held pool its slots back (unless someone changed them meanwhile) and drop the saved
    slots. Returns how many pools were given their slots back."""
    saved, existed = _held(api)
    if not existed:
        return 0
    current = {p["name"]: p["slots"] for p in _pools(api)}
    released = 0
    for name, slots in saved.items():
        if current.get(name) == 0:  # still held: a pool changed by hand meanwhile keeps its new slots
            _set_slots(api, name, slots)
            released += 1
    api.delete(f"/variables/{HOLD_VARIABLE}")
    return released


def _held(api: Any) -> tuple[dict[str, int], bool]:
    # Imported here: api imports requests, which the housekeeper loads only once there is a hold to manage.
    from airflow_resource.api import APIError

    try:
        value = api.get(f"/variables/{HOLD_VARIABLE}")["value"]
    except APIError as exc:
        if exc.status == 404:
            return {}, False
        raise
    try:
        saved = json.loads(value)
    except ValueError:
        saved = None
    return (saved if isinstance(saved, dict) else {}), True


def _set_slots(api: Any, name: str, slots: int) -> None:
    # Only `slots` (update_mask): the only field Airflow lets anyone change on default_pool.
    api.patch(f"/pools/{quote(name, safe='')}", {"name": name, "slots": slots}, params={"update_mask": "slots"})


def _pools(api: Any) -> list[dict[str, Any]]:
    return api.paged("/pools", "pools")
