"""Teams: DAG-level isolation with the FAB auth manager's own per-DAG permissions (`./cli.sh teams ...`).

A team NAME is a FAB role `team-NAME` and a folder `<dags>/teams/NAME/`. The role is FAB's User role
without its rights on every DAG and on assets (FAB cannot limit those to a team's), plus can_read and can_edit on `DAG:<dag_id>` for each DAG whose file is in the
team's folder. FAB's checks then keep a team's users to their DAGs in the REST API and the UI: the
list, the DAG, its runs (trigger, clear), task instances, logs and XComs all need the DAG's own
permission. `sync` derives every team role again from where the DAGs are; `content add --team` runs it.

Airflow 3.3.2's multi-team mode (`[core] multi_team`) does not help here: the FAB auth manager ignores
the team ("FAB has no multi-team support", providers/fab/auth_manager/fab_auth_manager.py).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from airflow_resource import printer
from airflow_resource.access import names, users
from airflow_resource.access.client import FabAPI, body, done, fab_api, not_found, pairs, q
from airflow_resource.access.roles import TEAM_ROLE_PREFIX
from airflow_resource.config.settings import Settings
from airflow_resource.errors import AlreadySo, CommandError

TEAMS_DIR = "teams"
DAGS_BUNDLE = "dags-folder"
BASE_ROLE = "User"
DAG_PREFIX, DAG_RUN_PREFIX = "DAG:", "DAG Run:"
# What a team role does not take from User: the rights on every DAG, and assets. FAB has no per-asset
# rights: reading them shows every DAG's asset events (their source DAG, run and extra), and creating one
# triggers any team's DAGs scheduled on that asset.
DROPPED = frozenset({("can_read", "DAGs"), ("can_edit", "DAGs"), ("can_delete", "DAGs")})
DROPPED_RESOURCES = frozenset({"Assets", "Asset Aliases"})
PER_DAG = ("can_read", "can_edit")  # see, trigger, clear, pause; deleting a DAG stays the operator's


def role_name(team: str) -> str:
    return TEAM_ROLE_PREFIX + team


def folder(s: Settings, team: str) -> Path:
    return s.dags_dir / TEAMS_DIR / team


def existing_folder(s: Settings, team: str) -> Path:
    """The team's DAG folder, which `teams add` made (`content add --team`)."""
    path = folder(s, names.team(team))
    if not path.is_dir():
        raise CommandError(f"no team named {team!r} (no folder {path})", f"make it: `./cli.sh teams add {team}`")
    return path


def team_of(dag: dict[str, Any], dags_dir: Path) -> str | None:
    """The team whose folder holds the DAG's file (teams/NAME/...), from the REST API's DAG."""
    if dag.get("bundle_name") not in (None, DAGS_BUNDLE):
        return None
    rel = dag.get("relative_fileloc")
    if not rel and dag.get("fileloc"):
        try:
            rel = str(Path(dag["fileloc"]).relative_to(dags_dir))
        except ValueError:
            return None
    parts = PurePosixPath(rel or "").parts
    return parts[1] if len(parts) >= 3 and parts[0] == TEAMS_DIR else None


def base_permissions(user_role: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """A team role's permissions before its DAGs: FAB's User role less every right on all DAGs."""
    return {(a, r) for a, r in user_role if (a, r) not in DROPPED and r not in DROPPED_RESOURCES
            and not r.startswith((DAG_PREFIX, DAG_RUN_PREFIX))}


def derive(base: set[tuple[str, str]], dags: list[dict[str, Any]], teams: Iterable[str], dags_dir: Path,
           known_resources: set[str]) -> tuple[dict[str, set[tuple[str, str]]], dict[str, list[str]], list[str]]:
    """Each team role's permissions, each team's DAG ids, and the DAGs FAB has no resource for yet (the DAG
    processor creates DAG:<dag_id> when it parses the file: those join at the next sync)."""
    teams = set(teams)
    wanted = {role_name(t): set(base) for t in teams}
    owned: dict[str, list[str]] = {t: [] for t in teams}
    pending = []
    for dag in sorted(dags, key=lambda d: d["dag_id"]):
        team = team_of(dag, dags_dir)
        if team not in teams:
            continue
        resource = DAG_PREFIX + dag["dag_id"]
        if resource not in known_resources:
            pending.append(dag["dag_id"])
            continue
        owned[team].append(dag["dag_id"])
        wanted[role_name(team)] |= {(a, resource) for a in PER_DAG}
    return wanted, owned, pending


def _team_names(roles: list[dict[str, Any]]) -> list[str]:
    return sorted(r["name"][len(TEAM_ROLE_PREFIX):] for r in roles if r["name"].startswith(TEAM_ROLE_PREFIX))


def _state(api: FabAPI, s: Settings) -> dict[str, Any]:
    """What a derivation reads: roles, the User role's permissions, the DAGs and FAB's resources."""
    roles = api.items("/roles", "roles")
    base_role = next((r for r in roles if r["name"] == BASE_ROLE), None)
    if base_role is None:
        raise CommandError(f"FAB's {BASE_ROLE} role is missing", "start the stack again: FAB makes it at start")
    dags = api.core().paged("/dags", "dags", {"exclude_stale": "false"})
    known = {p["resource"]["name"] for p in api.items("/permissions", "actions", "permissions")}
    return {"roles": {r["name"]: r for r in roles}, "teams": _team_names(roles),
            "base": base_permissions(pairs(base_role)), "dags": dags, "known": known}


def sync(s: Settings, api: FabAPI | None = None) -> dict[str, list[str]]:
    """Derive every team role from where the DAGs are now; change only the roles that differ."""
    api = api or fab_api(s)
    st = _state(api, s)
    wanted, owned, pending = derive(st["base"], st["dags"], st["teams"], s.dags_dir, st["known"])
    for role, perms in sorted(wanted.items()):
        if pairs(st["roles"][role]) != perms:
            api.patch(f"/roles/{q(role)}", {"name": role, "actions": body(perms)}, params={"update_mask": "actions"})
            team = role[len(TEAM_ROLE_PREFIX):]
            done(s, "teams.sync", f"team {team}: role {role} now reaches {len(owned[team])} DAG(s): "
                 f"{', '.join(owned[team]) or 'none'}", team=team, dags=owned[team])
    if pending:
        printer.warn(f"not parsed yet, left for the next `teams sync`: {', '.join(pending)}")
    return owned


def _make_folder(s: Settings, team: str) -> Path:
    """teams/ and teams/NAME/ with the dags folder's owner and mode (the DAG processor reads them)."""
    from airflow_resource import safe_files

    st = os.stat(s.dags_dir)
    mode = st.st_mode & 0o755
    for path in (s.dags_dir / TEAMS_DIR, folder(s, team)):
        safe_files.ensure_dir(path, mode, st.st_uid, st.st_gid, parents=False)
    return folder(s, team)


def add(s: Settings, team: str) -> None:
    names.team(team)
    api = fab_api(s)
    role = role_name(team)
    if api.one("/roles", role) is not None:
        raise AlreadySo(f"team {team} already exists (role {role})", "`./cli.sh teams list` shows its DAGs and users")
    st = _state(api, s)
    wanted, owned, _pending = derive(st["base"], st["dags"], [team], s.dags_dir, st["known"])
    path = _make_folder(s, team)
    api.post("/roles", {"name": role, "actions": body(wanted[role])})
    done(s, "teams.add", f"team {team} added: role {role}, DAG folder {path} ({len(owned[team])} DAG(s) in it)",
         team=team)


def _existing(api: FabAPI, team: str) -> str:
    names.team(team)
    role = role_name(team)
    if api.one("/roles", role) is None:
        raise not_found("team", team, _team_names(api.items("/roles", "roles")))
    return role


def remove(s: Settings, team: str) -> None:
    api = fab_api(s)
    role = _existing(api, team)
    api.delete(f"/roles/{q(role)}")
    path = folder(s, team)
    left = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    if path.is_dir() and not left:
        path.rmdir()
    elif left:
        printer.warn(f"{path} still holds {len(left)} file(s): their DAGs are now the admin's alone")
    done(s, "teams.remove", f"team {team} removed (role {role})", team=team)


def _membership(s: Settings, team: str, username: str, join: bool) -> None:
    api = fab_api(s)
    role = _existing(api, team)
    users.refuse_protected(s, names.user(username), "teams add-user" if join else "teams remove-user")
    current = [r["name"] for r in users.get(api, username).get("roles") or []]
    if (role in current) == join:
        raise AlreadySo(f"{username} is {'already' if join else 'not'} in team {team}")
    roles = current + [role] if join else [r for r in current if r != role]
    if not roles:
        raise CommandError(f"{role} is {username}'s only role", f"give another first: `./cli.sh users set-roles "
                           f"{username} Viewer` (or remove the user)")
    users.put_roles(api, username, roles)
    if join:
        _warn_wider(api, username, [r for r in roles if r != role])
    done(s, f"teams.{'add' if join else 'remove'}-user",
         f"{username} {'joined' if join else 'left'} team {team}", team=team, account=username)


def _warn_wider(api: FabAPI, username: str, others: list[str]) -> None:
    """A role that reads every DAG (Viewer, User, Op, Admin) makes the team no limit for this user."""
    wide = [r["name"] for r in api.items("/roles", "roles")
            if r["name"] in others and ("can_read", "DAGs") in pairs(r)]
    if wide:
        printer.warn(f"{username} also has {', '.join(wide)}, which read(s) every DAG: the team limits nothing "
                     f"until `./cli.sh users set-roles {username} <roles without it>`")


def add_user(s: Settings, team: str, username: str) -> None:
    _membership(s, team, username, join=True)


def remove_user(s: Settings, team: str, username: str) -> None:
    _membership(s, team, username, join=False)


def list_teams(s: Settings) -> list[dict[str, Any]]:
    api = fab_api(s)
    st = _state(api, s)
    _wanted, owned, _pending = derive(st["base"], st["dags"], st["teams"], s.dags_dir, st["known"])
    members: dict[str, list[str]] = {}
    for u in api.items("/users", "users"):
        for r in u.get("roles") or []:
            members.setdefault(r["name"], []).append(u["username"])
    granted = {t: sorted({r[len(DAG_PREFIX):] for _a, r in pairs(st["roles"][role_name(t)])
                          if r.startswith(DAG_PREFIX)}) for t in st["teams"]}
    return [{"team": t, "role": role_name(t), "folder": str(folder(s, t)), "dags": owned[t],
             "in_sync": granted[t] == owned[t],
             "users": sorted(members.get(role_name(t), []))} for t in st["teams"]]
