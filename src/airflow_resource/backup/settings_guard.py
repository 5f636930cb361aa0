"""What a restore's resource.toml would change among the settings that name a path, a user or a program.

A restore puts the archive's resource.toml in place, and root commands read it next: a venv, service
user, dags_dir or Airflow option changed there runs someone else's code as someone else. So the two files
are resolved the same way (defaults, then the file; no environment, so the files themselves are compared)
and every guarded setting that differs is shown; the restore refuses them unless --accept-settings
(not --force, which a restore over an existing database needs anyway).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from airflow_resource import printer
from airflow_resource.config import settings as config
from airflow_resource.errors import CommandError

# Settings whose value is a path, a user name or a URL (where secrets go, where code comes from), by
# their name in the settings table: home, venv, dags_dir, service_user, admin_user, postgres_url, ...
GUARDED_SUFFIXES = ("home", "venv", "_dir", "_file", "_user", "_url")
ALSO_GUARDED = ("api_host",)  # 0.0.0.0 serves the UI and the Execution API to the network
AIRFLOW_OPTIONS = "airflow_options"  # any [airflow.*] option: many name classes to import or paths
MASK = "********"


def guarded() -> tuple[str, ...]:
    return tuple(s.name for s in config.SETTINGS
                 if s.type is str and (s.name.endswith(GUARDED_SUFFIXES) or s.name in ALSO_GUARDED))


def _shown(name: str, value: Any) -> str:
    """A value for the table: credentials masked (a URL's password, a secret setting, a secret-looking option)."""
    from airflow_resource.backup import create

    if value in (None, ""):
        return "(unset)"
    text = str(value)
    if name in config.BY_NAME and config.BY_NAME[name].secret:
        return MASK
    if name.endswith("_url"):
        return create._mask_url(text)
    if any(w in name.upper() for w in create.SECRET_WORDS) and name.startswith(config.AIRFLOW_ENV_PREFIX):
        return MASK
    return text


def _archived_data(text: bytes) -> dict[str, Any]:
    """The archive's resource.toml, held to the checks read_config_file makes of the home's."""
    try:
        data = tomllib.loads(text.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CommandError(f"not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(config.BY_NAME) - {config.AIRFLOW_TABLE})
    if unknown:
        raise CommandError(f"it has unknown setting(s): {', '.join(unknown)}")
    return data


def _resolved(home: Path, toml: Path | bytes | None, what: str) -> dict[str, Any]:
    try:
        if isinstance(toml, bytes):
            data = _archived_data(toml)
        else:
            data = config.read_config_file(toml) if toml is not None else {}
        s = config.resolve({"home": str(home)}, {}, read_file=lambda _path: data)
    except CommandError as exc:
        raise CommandError(f"{what} is not usable: {exc.message}",
                           "use another archive; nothing was changed") from None
    values = s.to_json()
    values["venv"] = str(s.configured_venv or s.venv)  # what the file says, not the install record's
    return values


def changes(home: Path, current: Path, archived: bytes | None) -> list[dict[str, str]]:
    """[{setting, current, archive}] for each guarded setting the archive's resource.toml changes;
    archived None: the archive has none, the home keeps its own (no change)."""
    if archived is None:
        return []
    before = _resolved(home, current if current.is_file() else None, f"this home's {current}")
    after = _resolved(home, archived, "the archive's resource.toml")
    rows = [{"setting": n, "current": _shown(n, before[n]), "archive": _shown(n, after[n])}
            for n in guarded() if before[n] != after[n]]
    old, new = before[AIRFLOW_OPTIONS], after[AIRFLOW_OPTIONS]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            rows.append({"setting": key, "current": _shown(key, old.get(key)), "archive": _shown(key, new.get(key))})
    return rows


ACCEPT_FLAG = "--accept-settings"


def check(rows: list[dict[str, str]], accept: bool) -> None:
    """Show the changes; refuse them unless accepted."""
    if not rows:
        return
    printer.table(["setting", "this home", "the archive's resource.toml"],
                  [[r["setting"], r["current"], r["archive"]] for r in rows],
                  title="settings the restore would change (paths, users, programs)")
    summary = ", ".join(f"{r['setting']} {r['current']} -> {r['archive']}" for r in rows)
    if not accept:
        raise CommandError(
            f"the archive's resource.toml changes {len(rows)} setting(s) that name a path, a user or a program: "
            f"{summary}",
            f"if these are the settings you want, restore with {ACCEPT_FLAG}; otherwise use another archive; "
            "nothing was changed")
    printer.warn(f"restoring the archive's resource.toml with {ACCEPT_FLAG}: {summary}")
