"""`connections add|list|get|remove|import|export`: Airflow connections through the REST API
(/api/v2/connections), which stores them in the metadata database encrypted with the Fernet key.

Passwords never come from a command line (a prompt, a file or stdin: cli/connections.py) and are never
printed unless asked. The REST API answers "***" for every stored password by design, so what must show
one (`get --show-secrets`, `export`) reads it through a one-off of the venv's Python as the service user
(standalone/connections_read.py), the way the start sets resource_postgres. Bad input is refused before
anything is written; an import that fails part-way removes what it had added.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from airflow_resource import standalone
from airflow_resource.api import AirflowAPI, APIError
from airflow_resource.config import airflow_config
from airflow_resource.config import secrets as secrets_mod
from airflow_resource.config.settings import Settings
from airflow_resource.errors import AlreadySo, CommandError
from airflow_resource.stack import handle

# Airflow takes ^[\w.-]+$ (unicode \w), at most 200: ASCII only here, so an id is safe in a shell, a URL,
# a file name and an AIRFLOW_CONN_ variable alike.
ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
TYPE_RE = re.compile(r"[a-z0-9_]{1,100}")
MANAGED = airflow_config.DATA_CONN_ID  # the resource's own (set at every start): not for these commands
FIELDS = ("connection_id", "conn_type", "description", "host", "login", "schema", "port", "password", "extra")
READ_TIMEOUT_S = 180
MASK = "********"


def audit_record(s: Settings, action: str, conn_ids: list[str]) -> None:
    """Connection changes in the event log (ids only, never a password)."""
    from airflow_resource import audit

    audit.record(s, f"resource.connections.{action}", outcome="ok", connections=conn_ids)


def check_id(conn_id: str) -> str:
    if not isinstance(conn_id, str) or not ID_RE.fullmatch(conn_id):
        raise CommandError(f"connection id {conn_id!r} is not allowed",
                           "use letters, digits, '_', '.' and '-' (at most 200, not starting with '.' or '-')")
    return conn_id


def check_not_managed(conn_id: str, what: str) -> None:
    if conn_id == MANAGED:
        raise CommandError(f"{MANAGED} is the resource's own connection (pipelines' database): it cannot be {what}",
                           "it is set at every start from secrets.env; `./cli.sh credentials rotate postgres` "
                           "renews its password")


def from_uri(uri: str) -> dict[str, Any]:
    """A connection from an Airflow URI (type://login@host:port/schema?extra), like Airflow's own parser.
    A URI carrying a password is refused: it would be on the command line, in ps and the shell's history."""
    parts = urlsplit(uri)
    if not parts.scheme or "://" not in uri:
        raise CommandError(f"not a connection URI: {uri.split('@')[-1]!r}", "e.g. postgres://user@db.example:5432/mydb")
    if parts.password is not None:
        raise CommandError("the URI holds a password: a command line is visible in `ps` and the shell's history",
                           "give the URI without it and the password with --password-file FILE, --password-file - "
                           "(stdin) or --password-prompt")
    conn_type = "postgres" if parts.scheme == "postgresql" else parts.scheme.replace("-", "_")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    extra = query.get("__extra__")
    if extra is None and query:
        extra = json.dumps(query)
    try:
        port = parts.port
    except ValueError:
        raise CommandError(f"the URI's port is not a number: {parts.netloc.split('@')[-1]!r}") from None
    return {"conn_type": conn_type, "host": unquote(parts.hostname) if parts.hostname else None,
            "login": unquote(parts.username) if parts.username else None,
            "schema": unquote(parts.path[1:]) if parts.path[1:] else None, "port": port, "extra": extra}


def normalise(item: dict[str, Any], types: set[str] | None) -> dict[str, Any]:
    """One connection checked and reduced to the REST body's fields."""
    unknown = sorted(set(item) - set(FIELDS) - {"conn_id"})
    if unknown:
        raise CommandError(f"unknown connection field(s): {', '.join(unknown)}", f"known: {', '.join(FIELDS)}")
    body = {k: item.get(k) for k in FIELDS}
    body["connection_id"] = check_id(item.get("connection_id") or item.get("conn_id") or "")
    conn_type = body.get("conn_type")
    if not isinstance(conn_type, str) or not TYPE_RE.fullmatch(conn_type):
        raise CommandError(f"connection {body['connection_id']}: type {conn_type!r} is not a connection type",
                           "e.g. postgres, http, generic; `./cli.sh connections types` lists them")
    if types is not None and conn_type not in types:
        raise CommandError(f"connection {body['connection_id']}: unknown type {conn_type!r}",
                           "`./cli.sh connections types` lists the types the installed providers offer")
    if body.get("port") not in (None, ""):
        try:
            body["port"] = int(body["port"])
        except (TypeError, ValueError):
            raise CommandError(f"connection {body['connection_id']}: port {body['port']!r} is not a number") from None
        if not 0 < body["port"] < 65536:
            raise CommandError(f"connection {body['connection_id']}: port {body['port']} is out of range")
    else:
        body["port"] = None
    extra = body.get("extra")
    if isinstance(extra, dict):
        body["extra"] = json.dumps(extra)
    elif extra not in (None, ""):
        try:
            if not isinstance(json.loads(extra), dict):
                raise ValueError
        except (TypeError, ValueError):
            raise CommandError(f"connection {body['connection_id']}: extra must be a JSON object") from None
    for key in ("description", "host", "login", "schema", "password"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise CommandError(f"connection {body['connection_id']}: {key} must be text")
    return {k: v for k, v in body.items() if v not in (None, "")}


def running_api(s: Settings) -> AirflowAPI:
    if not handle.is_running(s):
        raise CommandError(f"the stack is not running ({s.home})", "start it: `./cli.sh manage start`")
    return AirflowAPI.for_stack(s)


def conn_types(api: AirflowAPI) -> set[str]:
    """The connection types of the installed providers (what the UI's form offers)."""
    r = api.session.get(f"{api.base}/ui/connections/hook_meta", timeout=api.timeout,
                        headers={"Authorization": f"Bearer {api.token()}"})
    if r.status_code != 200:
        raise CommandError(f"could not list the connection types (HTTP {r.status_code})",
                           "is the stack healthy? `./cli.sh status`")
    return {m["connection_type"] for m in r.json() if m.get("connection_type")}


def exists(api: AirflowAPI, conn_id: str) -> bool:
    try:
        api.get(f"/connections/{conn_id}")
        return True
    except APIError as exc:
        if exc.status == 404:
            return False
        raise


def add(s: Settings, item: dict[str, Any]) -> dict[str, Any]:
    api = running_api(s)
    body = normalise(item, conn_types(api))
    check_not_managed(body["connection_id"], "added or replaced")
    if exists(api, body["connection_id"]):
        raise CommandError(f"connection {body['connection_id']} already exists: nothing changed",
                           f"remove it first: `./cli.sh connections remove {body['connection_id']}`")
    api.post("/connections", body)
    audit_record(s, "add", [body["connection_id"]])
    return shown(body)


def shown(conn: dict[str, Any], show_secrets: bool = False) -> dict[str, Any]:
    """A connection for output: every field, the password masked unless asked (the API's "***" too)."""
    out = {k: conn.get(k) for k in FIELDS if k != "password"}
    out["connection_id"] = conn.get("connection_id") or conn.get("conn_id")
    password = conn.get("password")
    out["password"] = password if show_secrets else (MASK if password else None)
    return out


def list_all(s: Settings) -> list[dict[str, Any]]:
    return [shown(c) for c in running_api(s).paged("/connections", "connections")]


def get(s: Settings, conn_id: str, show_secrets: bool) -> dict[str, Any]:
    check_id(conn_id)
    api = running_api(s)
    try:
        conn = api.get(f"/connections/{conn_id}")
    except APIError as exc:
        if exc.status == 404:
            raise AlreadySo(f"no connection {conn_id}", "`./cli.sh connections list` lists them") from None
        raise
    if show_secrets:
        conn = read_with_passwords(s, [conn_id])[0]
    return shown(conn, show_secrets)


def remove(s: Settings, conn_id: str) -> None:
    check_id(conn_id)
    check_not_managed(conn_id, "removed")
    api = running_api(s)
    try:
        api.delete(f"/connections/{conn_id}")
    except APIError as exc:
        if exc.status == 404:
            raise AlreadySo(f"no connection {conn_id}: nothing removed", "`./cli.sh connections list` lists them") from None
        raise
    audit_record(s, "remove", [conn_id])


def read_with_passwords(s: Settings, conn_ids: list[str], skip: list[str] = ()) -> list[dict[str, Any]]:
    """Connections with their passwords, through standalone/connections_read.py as the service user."""
    from airflow_resource.stack.handle import Stack

    st = Stack.load(s)
    proc = st.run_airflow([str(s.venv / "bin" / "python"), "-"], READ_TIMEOUT_S,
                          stdin=standalone.source("connections_read"),
                          extra_env={"APACHE_AIRFLOW_CONN_IDS": ",".join(conn_ids),
                                     "APACHE_AIRFLOW_CONN_SKIP": ",".join(skip)})
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise CommandError("reading the connections failed:\n" + (proc.stderr or proc.stdout).strip()[-1500:])
    return json.loads(lines[-1])["connections"]


def export(s: Settings, path: Path, force: bool) -> int:
    """Every connection but the resource's own, passwords included, as JSON in a new 0600 file."""
    running_api(s)  # the stack must run: the same answer as the other actions
    if path.exists() and not force:
        raise CommandError(f"{path} exists: nothing written", "choose another file, or --force to replace it")
    conns = [shown(c, show_secrets=True) for c in read_with_passwords(s, [], skip=[MANAGED])]
    text = json.dumps({"connections": conns}, indent=1) + "\n"
    secrets_mod.write_private(path, text)
    audit_record(s, "export", [c["connection_id"] for c in conns])
    return len(conns)


def parse_import(text: str) -> list[dict[str, Any]]:
    """`export`'s format ({"connections": [...]}) or Airflow's own (`airflow connections export`: {id: {...}})."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"not JSON: {exc}", "give a file written by `./cli.sh connections export`") from None
    if isinstance(data, dict) and isinstance(data.get("connections"), list):
        items = data["connections"]
    elif isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
        items = [{"connection_id": k, **v} for k, v in data.items()]
    else:
        raise CommandError("not a connections file", 'expected {"connections": [...]} as `connections export` writes')
    if not all(isinstance(i, dict) for i in items):
        raise CommandError("not a connections file: every connection must be a JSON object")
    return items


def import_file(s: Settings, path: Path) -> list[str]:
    """Add every connection of the file, or none: all are checked (ids, types, duplicates in the file or
    the stack) before the first is written; an API failure part-way removes the ones this import added."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {exc}") from None
    api = running_api(s)
    types = conn_types(api)
    bodies = [normalise(i, types) for i in parse_import(text)]
    ids = [b["connection_id"] for b in bodies]
    seen: set[str] = set()
    for conn_id in ids:
        check_not_managed(conn_id, "imported")
        if conn_id in seen:
            raise CommandError(f"connection {conn_id} is twice in {path}: nothing imported")
        seen.add(conn_id)
    present = {c["connection_id"] for c in api.paged("/connections", "connections")} & seen
    if present:
        raise CommandError(f"connection(s) {', '.join(sorted(present))} already exist: nothing imported",
                           "remove them first (`./cli.sh connections remove ID`), or leave them out of the file")
    added: list[str] = []
    try:
        for body in bodies:
            api.post("/connections", body)
            added.append(body["connection_id"])
    except CommandError:
        for conn_id in added:
            try:
                api.delete(f"/connections/{conn_id}")
            except CommandError:
                pass
        raise
    audit_record(s, "import", added)
    return added
