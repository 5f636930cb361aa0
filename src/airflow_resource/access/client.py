"""The FAB auth manager's REST API (/auth/fab/v1: users, roles, permissions) as the resource's admin, with
the same token flow as api.py; and `done`, where every change of users, roles and teams is reported."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow_resource import printer
from airflow_resource.api import AirflowAPI, APIError
from airflow_resource.config import secrets as secrets_mod
from airflow_resource.config.settings import Settings
from airflow_resource.errors import CommandError

PAGE = 100


class FabAPI(AirflowAPI):
    PREFIX = "/auth/fab/v1"

    def core(self) -> AirflowAPI:
        """The same login on /api/v2 (one token for both)."""
        other = AirflowAPI(self.base, *self._auth, timeout=self.timeout)
        other.session, other._token = self.session, self.token()
        return other

    def items(self, path: str, *keys: str) -> list[dict]:
        """Every item of a FAB list endpoint (its list is under the first of `keys` it answers with)."""
        found: list[dict] = []
        while True:
            data = self.get(path, params={"limit": PAGE, "offset": len(found)})
            batch = next((data[k] for k in keys if k in data), [])
            found += batch
            if not batch or len(found) >= data.get("total_entries", 0):
                return found

    def one(self, path: str, name: str) -> dict | None:
        """The object, or None when the API answers 404."""
        try:
            return self.get(f"{path}/{q(name)}")
        except APIError as exc:
            if exc.status == 404:
                return None
            raise


def q(value: str) -> str:
    return quote(value, safe="")


def fab_api(s: Settings) -> FabAPI:
    """The running stack's FAB API with the admin's login (the stack must run: users live in its database)."""
    from airflow_resource.stack import handle

    if not handle.is_running(s):
        raise CommandError(f"the stack is not running ({s.home})",
                           "users, roles and teams live in its database: `./cli.sh manage start`")
    sec = secrets_mod.require_installed(s)
    return FabAPI(s.api_base, s.admin_user, sec.admin_password)


def not_found(kind: str, name: str, known: list[str]) -> CommandError:
    shown = ", ".join(sorted(known)[:30]) or "none"
    return CommandError(f"no {kind} named {name!r}", f"known {kind}s: {shown}", exit_code=2)


def pairs(role: dict[str, Any]) -> set[tuple[str, str]]:
    """A role's permissions as (action, resource) pairs (the API calls the list "actions")."""
    items = role.get("actions", role.get("permissions")) or []
    return {(p["action"]["name"], p["resource"]["name"]) for p in items}


def body(perms: set[tuple[str, str]] | list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"action": {"name": a}, "resource": {"name": r}} for a, r in sorted(perms)]


def done(s: Settings, event: str, message: str, **what: Any) -> None:
    """A change has been made (event e.g. "users.add", what: its subjects, never a secret): said, and
    recorded in Airflow's event log as resource.<event> with the OS user who made it."""
    from airflow_resource import audit

    printer.ok(message)
    audit.record(s, f"resource.{event}", outcome="ok", **what)
