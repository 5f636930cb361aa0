"""What a rotation changes: the rotatable names and their secrets, who holds each (the component table),
and the plan file that makes an interrupted rotation resumable.

The plan (<home>/secrets.rotating.json, root's, 0600) is written before anything is applied: the names,
the old and the new values. Re-running `credentials rotate` with the same names finds it and runs every
step again with the same new values (each step is idempotent), so a rotation stopped part-way can always
be finished and never generates a second set of secrets that matches nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from airflow_resource.config import secrets as secrets_mod
from airflow_resource.config.secrets import Secrets
from airflow_resource.errors import CommandError
from airflow_resource.stack.components import WORKER_PREFIX, Component

# Rotatable name -> the Secrets fields it renews.
FIELDS: dict[str, tuple[str, ...]] = {
    "admin": ("admin_password",),
    # The metadata role, the superuser and resource_data's role: one PostgreSQL, rotated together.
    "postgres": ("postgres_password", "postgres_superuser_password", "data_db_password"),
    "redis": ("redis_password",),
    "flower": ("flower_password",),
    "jwt": ("jwt_private_key",),
    "api-secret-key": ("api_secret_key",),
    "fernet": ("fernet_key",),
}
NAMES = tuple(FIELDS)
# Who holds each: the parts of the Airflow environment (airflow_config.SECRET_KEYS) a component's table
# entry grants (Component.secrets), plus components that carry it in their own env.
PARTS: dict[str, frozenset[str]] = {
    "admin": frozenset(), "postgres": frozenset({"metadata_db"}), "redis": frozenset({"broker"}),
    "flower": frozenset({"flower_auth"}), "jwt": frozenset({"jwt_signing"}),
    "api-secret-key": frozenset({"api_secret_key"}), "fernet": frozenset({"fernet"}),
}
ALSO: dict[str, frozenset[str]] = {
    # the exporter's broker URL (metrics.BROKER_ENV) and the api-server's login counters (login_limit.REDIS_URL_ENV)
    "redis": frozenset({"metrics", "api-server"}),
    "jwt": frozenset({"api-server"}),     # the verifier: it reads the JWKS once, at start
}
EVERY_SECRET = frozenset({"backup"})     # the backup schedule gets the whole secrets.env (sec.as_env())
PLAN_FILE = "secrets.rotating.json"


def holders(comps: list[Component], names: list[str]) -> list[Component]:
    """The components to restart so that they hold the new secrets of `names`, in table order."""
    parts = frozenset().union(*(PARTS[n] for n in names))
    also = frozenset().union(*(ALSO.get(n, frozenset()) for n in names))
    return [c for c in comps if (c.secrets & parts) or c.name in also or (names and c.name in EVERY_SECRET)]


def is_worker(c: Component) -> bool:
    return c.name.startswith(WORKER_PREFIX)


def parse_names(names: list[str], all_: bool, embedded_postgres: bool, embedded_redis: bool) -> list[str]:
    """The names asked for, checked and in the rotation's order; --all: every one this home can rotate."""
    unknown = [n for n in names if n not in FIELDS]
    if unknown:
        raise CommandError(f"unknown secret(s) to rotate: {', '.join(unknown)}",
                           f"name some of: {', '.join(NAMES)}; or --all")
    if all_ and names:
        raise CommandError("name secrets or give --all, not both", "e.g. `./cli.sh credentials rotate redis flower`")
    if not all_ and not names:
        raise CommandError("which secrets? none named", f"name some of: {', '.join(NAMES)}; or --all")
    external = {"postgres": not embedded_postgres, "redis": not embedded_redis}
    if all_:
        return [n for n in NAMES if not external.get(n)]
    for n in names:
        if external.get(n):
            url = "APACHE_AIRFLOW_POSTGRES_URL" if n == "postgres" else "APACHE_AIRFLOW_REDIS_URL"
            raise CommandError(f"{n} is not embedded: its password is the server's, not this resource's",
                               f"change it on that server, then set the new URL in {url} and restart")
    return [n for n in NAMES if n in names]


def env_overridden(names: list[str], environ: Mapping[str, str]) -> list[str]:
    """Secret variables of `names` set in the environment: they win over secrets.env at run time, so a
    rotation written to secrets.env would not take effect."""
    return [Secrets.env_name(f) for n in names for f in FIELDS[n] if environ.get(Secrets.env_name(f))]


def generate(names: list[str]) -> dict[str, str]:
    return {f: secrets_mod.GENERATORS[f]() for n in names for f in FIELDS[n]}


@dataclass
class Plan:
    names: list[str]
    old: dict[str, str]
    new: dict[str, str]
    started: float
    jwt_grace_s: int
    resumed: bool = False

    def secrets(self, base: Secrets, fernet_both: bool) -> Secrets:
        """`base` with the new values; the Fernet key as "new,old" while both must decrypt."""
        values = dict(self.new)
        if "fernet_key" in values and fernet_both:
            values["fernet_key"] = f"{self.new['fernet_key']},{self.old['fernet_key']}"
        return dataclasses.replace(base, **values)

    def to_json(self) -> dict[str, Any]:
        return {"names": self.names, "old": self.old, "new": self.new, "started": self.started,
                "jwt_grace_s": self.jwt_grace_s}


def plan_path(home: Path) -> Path:
    return home / PLAN_FILE


def load_plan(home: Path) -> Plan | None:
    path = plan_path(home)
    if not path.exists():
        return None
    if path.stat().st_mode & 0o077:
        raise CommandError(f"{path} is readable by others", f"run: chmod 600 {path}")
    try:
        data = json.loads(path.read_text())
        return Plan(list(data["names"]), dict(data["old"]), dict(data["new"]), float(data["started"]),
                    int(data["jwt_grace_s"]), resumed=True)
    except (ValueError, KeyError, TypeError):
        raise CommandError(f"{path} is damaged", "it holds the new secrets of an unfinished rotation: restore it "
                           "from a backup, or, if nothing was applied yet, remove it") from None


def new_plan(home: Path, names: list[str], stored: Secrets, jwt_grace_s: int) -> Plan:
    old = {f: getattr(stored, f) for n in names for f in FIELDS[n]}
    plan = Plan(names, old, generate(names), time.time(), jwt_grace_s)
    save_plan(home, plan)
    return plan


def save_plan(home: Path, plan: Plan) -> None:
    secrets_mod.write_private(plan_path(home), json.dumps(plan.to_json(), indent=1) + "\n")


def drop_plan(home: Path) -> None:
    plan_path(home).unlink(missing_ok=True)


def stored_secrets(path: Path) -> Secrets:
    """secrets.env as written (the environment's overrides left out: they are not the file's)."""
    sec = secrets_mod.load(path, environ={})
    if sec is None:
        raise CommandError(f"{path} is missing", "install and start the stack: `./cli.sh manage start`")
    return sec


def write_secrets(path: Path, stored: Secrets, values: Mapping[str, str]) -> Secrets:
    """secrets.env rewritten at once (a fresh 0600 file renamed over it) with `values` replaced."""
    updated = dataclasses.replace(stored, **dict(values))
    secrets_mod.write_private(path, secrets_mod.render_env_file(updated))
    return updated


def effective(stored: Secrets, environ: Mapping[str, str] | None = None) -> Secrets:
    """What the components get: secrets.env's values, each overridable from the environment."""
    environ = os.environ if environ is None else environ
    return dataclasses.replace(stored, **{f.name: environ.get(Secrets.env_name(f.name)) or getattr(stored, f.name)
                                          for f in dataclasses.fields(Secrets)})
