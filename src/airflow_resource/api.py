"""A small client of the running stack's REST API (/api/v2) with a real JWT from /auth/token."""

from __future__ import annotations

import os
import time
from typing import Any

import requests

from airflow_resource.config import secrets as secrets_mod
from airflow_resource.config import tls
from airflow_resource.errors import CommandError
from airflow_resource.config.settings import Settings

TIMEOUT_S = 30
GET_ATTEMPTS = 3
RETRY_PAUSE_S = 1.0


class AirflowAPI:
    PREFIX = "/api/v2"  # where request() paths start (the FAB auth manager's API: access/client.py)

    def __init__(self, base_url: str, username: str, password: str, timeout: float = TIMEOUT_S,
                 ca_file: str | None = None):
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # loopback: never through the caller's proxy
        # HTTPS: verified against the stack's CA (a daemon is told it in its environment), never unverified.
        self.session.verify = ca_file or os.environ.get(tls.API_CA_ENV) or True
        self._auth = (username, password)
        self._token: str | None = None

    @classmethod
    def for_stack(cls, s: Settings) -> "AirflowAPI":
        sec = secrets_mod.require_installed(s)
        ca = tls.ca_file(s)
        return cls(s.api_base, s.admin_user, sec.admin_password, ca_file=str(ca) if ca else None)

    def token(self) -> str:
        if self._token is None:
            try:
                r = self.session.post(f"{self.base}/auth/token", timeout=self.timeout,
                                      json={"username": self._auth[0], "password": self._auth[1]})
            except requests.exceptions.SSLError as exc:
                raise _tls_error(self.base, exc) from None
            except (requests.ConnectionError, requests.Timeout):
                raise CommandError(f"the API at {self.base} does not answer",
                                   "is the stack running and healthy? `./cli.sh status --verbose`") from None
            if r.status_code not in (200, 201):
                raise CommandError(f"login to the API failed (HTTP {r.status_code}): {_detail(r)}",
                                   "check the admin password: `./cli.sh credentials --show-secrets`")
            self._token = r.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, ok: tuple[int, ...] = (200, 201, 204), **kw: Any) -> requests.Response:
        cached = self._token is not None
        r = self._request(method, path, ok, dict(kw))
        if r.status_code == 401 and cached and 401 not in ok:
            # Tokens live api_token_minutes: a long-running client (a daemon, a long wait) logs in again.
            self._token = None
            r = self._request(method, path, ok, kw)
        if r.status_code not in ok:
            raise APIError(r.status_code, f"{method} {path}: HTTP {r.status_code}: {_detail(r)}")
        return r

    def _request(self, method: str, path: str, ok: tuple[int, ...], kw: dict[str, Any]) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token()}", **kw.pop("headers", {})}
        # A loaded machine can make the api-server slow to answer: reads are retried, writes are not
        # (a timed-out POST may have happened).
        attempts = GET_ATTEMPTS if method == "GET" else 1
        for attempt in range(1, attempts + 1):
            try:
                r = self.session.request(method, f"{self.base}{self.PREFIX}{path}", headers=headers,
                                         timeout=self.timeout, **kw)
                break
            except requests.exceptions.SSLError as exc:
                raise _tls_error(self.base, exc) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt == attempts:
                    what = "did not answer in time" if isinstance(exc, requests.Timeout) else "does not answer"
                    raise CommandError(f"the API at {self.base} {what} ({method} {path})",
                                       "is the stack running and healthy? `./cli.sh status --verbose`") from None
                time.sleep(RETRY_PAUSE_S * attempt)
        return r

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw).json()

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        r = self.request("POST", path, json=body, **kw)
        return r.json() if r.content else None

    def patch(self, path: str, body: Any, **kw: Any) -> Any:
        return self.request("PATCH", path, json=body, **kw).json()

    def delete(self, path: str, **kw: Any) -> None:
        self.request("DELETE", path, **kw)

    def paged(self, path: str, key: str, params: dict[str, Any] | None = None, page: int = 100) -> list[dict]:
        """Every item of a paginated list endpoint."""
        items: list[dict] = []
        params = dict(params or {})
        while True:
            data = self.get(path, params={**params, "limit": page, "offset": len(items)})
            batch = data.get(key, [])
            items += batch
            if not batch or len(items) >= data.get("total_entries", 0):
                return items


def _tls_error(base: str, exc: Exception) -> CommandError:
    return CommandError(f"the API at {base} failed the TLS check ({exc})",
                        "the stack's CA is <home>/tls/ca.pem; a given certificate must name this host (docs/tls.md)")


class APIError(CommandError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _detail(r: requests.Response) -> str:
    try:
        data = r.json()
    except ValueError:
        return r.text[:300]
    detail = data.get("detail", data) if isinstance(data, dict) else data
    if isinstance(detail, list):  # FastAPI validation errors
        return "; ".join(f"{'.'.join(str(x) for x in d.get('loc', []))}: {d.get('msg')}" for d in detail
                         if isinstance(d, dict)) or str(detail)
    return str(detail)[:500]


def last_line(text: str | None) -> str:
    """The last line of a text the API returns, e.g. an import error's stack trace: the exception itself."""
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""
