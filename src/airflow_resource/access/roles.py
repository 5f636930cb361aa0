"""FAB roles: list, add (empty or a copy of another role), grant one permission (`./cli.sh roles ...`).

A team's role (team-NAME) is derived by `teams sync` and the built-in Admin holds everything: neither is
edited by hand here, since the next sync (or FAB's own start) would undo it.
"""

from __future__ import annotations

from typing import Any

from airflow_resource.access import names
from airflow_resource.access.client import FabAPI, body, done, fab_api, not_found, pairs, q
from airflow_resource.config.settings import Settings
from airflow_resource.errors import AlreadySo, CommandError

TEAM_ROLE_PREFIX = "team-"
BUILT_IN = ("Admin", "Op", "User", "Viewer", "Public")


def get(api: FabAPI, name: str) -> dict[str, Any]:
    role = api.one("/roles", names.role(name))
    if role is None:
        raise not_found("role", name, [r["name"] for r in api.items("/roles", "roles")])
    return role


def list_roles(s: Settings) -> list[dict[str, Any]]:
    api = fab_api(s)
    members: dict[str, list[str]] = {}
    for u in api.items("/users", "users"):
        for r in u.get("roles") or []:
            members.setdefault(r["name"], []).append(u["username"])
    return [{"name": r["name"], "users": sorted(members.get(r["name"], [])),
             "team": r["name"][len(TEAM_ROLE_PREFIX):] if r["name"].startswith(TEAM_ROLE_PREFIX) else None,
             "permissions": [list(p) for p in sorted(pairs(r))]}
            for r in api.items("/roles", "roles")]


def _refuse_derived(name: str, what: str) -> None:
    if name.startswith(TEAM_ROLE_PREFIX):
        raise CommandError(f"{name} is a team's role, derived from the team's DAGs by `teams sync`",
                           "make teams with `./cli.sh teams add NAME`; grant other rights through another role")
    if name == "Admin":
        raise CommandError(f"Admin holds every permission already: not changed by `roles {what}`")


def add(s: Settings, name: str, copy_from: str | None) -> None:
    names.role(name)
    _refuse_derived(name, "add")
    api = fab_api(s)
    if api.one("/roles", name) is not None:
        raise AlreadySo(f"role {name} already exists", "`./cli.sh roles grant` adds permissions to it")
    perms = pairs(get(api, copy_from)) if copy_from else set()
    api.post("/roles", {"name": name, "actions": body(perms)})
    done(s, "roles.add", f"role {name} added with {len(perms)} permission(s)"
         + (f" (those of {copy_from})" if copy_from else ""), role=name, copy_from=copy_from)


def grant(s: Settings, name: str, action: str, resource: str) -> None:
    names.role(name)
    _refuse_derived(name, "grant")
    api = fab_api(s)
    role = get(api, name)
    known = {(p["action"]["name"], p["resource"]["name"]) for p in api.items("/permissions", "actions", "permissions")}
    if (action, resource) not in known:
        actions = sorted({a for a, r in known if r == resource})
        hint = (f"actions on {resource!r}: {', '.join(actions)}" if actions else
                "`./cli.sh roles list --format json` shows the permissions roles hold, e.g. can_read on "
                "Connections; a DAG's resource is DAG:<dag_id>")
        raise CommandError(f"no permission {action} on {resource!r}", hint)
    current = pairs(role)
    if (action, resource) in current:
        raise AlreadySo(f"role {name} already has {action} on {resource}")
    api.patch(f"/roles/{q(name)}", {"name": name, "actions": body(current | {(action, resource)})},
              params={"update_mask": "actions"})
    done(s, "roles.grant", f"role {name} granted {action} on {resource}", role=name, action=action, resource=resource)
