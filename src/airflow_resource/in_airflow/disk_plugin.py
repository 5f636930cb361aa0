"""Airflow plugin of the resource: the api-server refuses new work while the disk is nearly full.

Installed as `<plugins>/resource_disk_guard.py`, which imports this module. Airflow 3 adds a plugin's
`fastapi_root_middlewares` to the api-server's app (airflow.api_fastapi.app.init_plugins); this one
answers HTTP 507 with a message that says why (the UI shows the `detail` of an error) to the requests
that create work (diskspace.NEW_WORK: trigger, backfill, clear, asset event) while a file system of
the home has less than APACHE_AIRFLOW_DISK_CRITICAL_MB free. Every other request passes untouched, so
the UI, the REST API's reads and the Execution API of running tasks keep working. The check is one
statvfs per watched folder, only on those requests.
"""

from __future__ import annotations

import json
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_resource.in_airflow import diskspace

INSUFFICIENT_STORAGE = 507


class DiskGuardMiddleware:
    """A plain ASGI middleware (nothing buffered, nothing added to other requests)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.paths, self.critical_mb = diskspace.from_env()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if (scope.get("type") == "http" and scope.get("method") == "POST" and self.paths
                and diskspace.NEW_WORK.search(scope.get("path", ""))):
            fs = diskspace.critical(self.paths, self.critical_mb)
            if fs is not None:
                body = json.dumps({"detail": diskspace.refusal(fs, self.critical_mb)}).encode()
                await send({"type": "http.response.start", "status": INSUFFICIENT_STORAGE,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class ResourceDiskGuardPlugin(AirflowPlugin):
    name = "apache_airflow_resource_disk_guard"
    fastapi_root_middlewares = [{"middleware": DiskGuardMiddleware, "args": [], "kwargs": {},
                                 "name": "apache-airflow resource: refuse new runs while the disk is full"}]
