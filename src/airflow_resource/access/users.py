"""FAB users: add, list, remove, set-password, set-roles (`./cli.sh users ...`).

Each action checks everything first (name, roles, password, duplicates), then makes one REST call, so a
refused command changes nothing. The resource's own users (the admin, the housekeeper) are managed by
the resource (secrets.env), not here.
"""

from __future__ import annotations

from typing import Any

from airflow_resource.access import names
from airflow_resource.access.client import FabAPI, done, fab_api, not_found, q
from airflow_resource.config.settings import Settings
from airflow_resource.errors import AlreadySo, CommandError

DEFAULT_ROLE = "Viewer"


def protected(s: Settings) -> dict[str, str]:
    """The users the resource keeps in step with its secrets, and why they are not edited here."""
    from airflow_resource.stack import components

    return {s.admin_user: "the resource's admin (its password is in secrets.env)",
            components.HOUSEKEEPER_USER: "the resource's housekeeper (its role and password are the resource's)"}


def refuse_protected(s: Settings, username: str, what: str) -> None:
    why = protected(s).get(username)
    if why:
        raise CommandError(f"{username} is {why}: not changed by `{what}`",
                           "the resource keeps this user as it is; make another one with `./cli.sh users add`")


def role_names(api: FabAPI) -> list[str]:
    return [r["name"] for r in api.items("/roles", "roles")]


def check_roles(api: FabAPI, roles: list[str]) -> list[str]:
    """The roles, each a valid name of an existing role; an unknown one refused with the known ones."""
    for r in roles:
        names.role(r)
    known = role_names(api)
    for r in roles:
        if r not in known:
            raise not_found("role", r, known)
    return list(dict.fromkeys(roles))


def get(api: FabAPI, username: str) -> dict[str, Any]:
    user = api.one("/users", names.user(username))
    if user is None:
        raise not_found("user", username, [u["username"] for u in api.items("/users", "users")])
    return user


def add(s: Settings, username: str, password_source: Any, roles: list[str], email: str | None,
        first_name: str | None, last_name: str | None) -> None:
    """password_source: a function of the user name that returns the checked password (prompt.read)."""
    names.user(username)
    email = names.email(email or (username if "@" in username else f"{username}@localhost"))
    first_name = names.display(first_name or username, "first name")
    last_name = names.display(last_name or "-", "last name")
    api = fab_api(s)
    roles = check_roles(api, roles or [DEFAULT_ROLE])
    if api.one("/users", username) is not None:
        raise AlreadySo(f"user {username} already exists", "`./cli.sh users set-roles` or `users set-password` "
                        "change it")
    taken = [u["username"] for u in api.items("/users", "users") if u.get("email", "").lower() == email.lower()]
    if taken:
        raise CommandError(f"the e-mail address {email} is already {taken[0]}'s", "pass another one with --email")
    password = password_source(username)
    api.post("/users", {"username": username, "email": email, "first_name": first_name, "last_name": last_name,
                        "roles": [{"name": r} for r in roles], "password": password})
    done(s, "users.add", f"user {username} added with role(s) {', '.join(roles)}", account=username, roles=roles)


def list_users(s: Settings) -> list[dict[str, Any]]:
    api = fab_api(s)
    mine = protected(s)
    return [{"username": u["username"], "email": u.get("email"), "first_name": u.get("first_name"),
             "last_name": u.get("last_name"), "roles": sorted(r["name"] for r in u.get("roles") or []),
             "active": u.get("active"), "last_login": u.get("last_login"), "managed_by_resource": u["username"] in mine}
            for u in api.items("/users", "users")]


def remove(s: Settings, username: str) -> None:
    names.user(username)
    refuse_protected(s, username, "users remove")
    api = fab_api(s)
    get(api, username)
    api.delete(f"/users/{q(username)}")
    done(s, "users.remove", f"user {username} removed", account=username)


def set_password(s: Settings, username: str, password_source: Any) -> None:
    names.user(username)
    refuse_protected(s, username, "users set-password")
    api = fab_api(s)
    get(api, username)
    password = password_source(username)
    # FAB ends the user's sessions when its password changes through this API.
    api.patch(f"/users/{q(username)}", {"password": password}, params={"update_mask": "password"})
    done(s, "users.set-password", f"password of {username} changed", account=username)


def set_roles(s: Settings, username: str, roles: list[str]) -> None:
    names.user(username)
    refuse_protected(s, username, "users set-roles")
    if not roles:
        raise CommandError("set-roles needs at least one role", "e.g. `./cli.sh users set-roles jane Viewer`")
    api = fab_api(s)
    user = get(api, username)
    roles = check_roles(api, roles)
    if sorted(r["name"] for r in user.get("roles") or []) == sorted(roles):
        raise AlreadySo(f"{username} already has exactly the role(s) {', '.join(roles)}")
    put_roles(api, username, roles)
    done(s, "users.set-roles", f"{username} now has the role(s) {', '.join(roles)}", account=username, roles=roles)


def put_roles(api: FabAPI, username: str, roles: list[str]) -> None:
    api.patch(f"/users/{q(username)}", {"roles": [{"name": r} for r in roles]}, params={"update_mask": "roles"})
