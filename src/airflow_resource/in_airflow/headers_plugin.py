"""Airflow plugin of the resource: security headers on every api-server response (the React UI, the REST and
Execution APIs, FAB's login pages).

Installed as `<plugins>/resource_security_headers.py`, which imports this module; Airflow 3 wraps its root app in
a plugin's `fastapi_root_middlewares` (airflow.api_fastapi.app.init_plugins). A header the app already set is
left as it is. HSTS only on HTTPS responses (a browser ignores it over http anyway, and a stack without TLS
must stay reachable over http).
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

HSTS = (b"strict-transport-security", b"max-age=31536000")
HEADERS = (
    # SAMEORIGIN, not DENY: the UI shows FAB's pages (users, roles) and plugins' views in frames of its own.
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    # A policy on what the page may be framed by, embed, post to and take as its base, not on script or
    # style sources: the React UI and FAB's pages use inline styles and scripts, so a source policy
    # would break them; these directives break nothing and close clickjacking, <base> and form hijacking.
    (b"content-security-policy", b"frame-ancestors 'self'; object-src 'none'; base-uri 'self'; form-action 'self'"),
)


class SecurityHeadersMiddleware:
    """A plain ASGI middleware: adds the headers to the response start, passes everything else through."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        wanted = HEADERS + ((HSTS,) if scope.get("scheme") == "https" else ())

        async def with_headers(message: dict) -> None:
            if message.get("type") == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in wanted if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class ResourceSecurityHeadersPlugin(AirflowPlugin):
    name = "apache_airflow_resource_security_headers"
    fastapi_root_middlewares = [{"middleware": SecurityHeadersMiddleware, "args": [], "kwargs": {},
                                 "name": "apache-airflow resource: security headers"}]
