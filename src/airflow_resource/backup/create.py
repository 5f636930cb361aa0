"""`./cli.sh backup create` / `./cli.sh backup list` and the retention of scheduled backups.

An archive holds the `airflow` (metadata) and `resource_data` databases as pg_dump custom-format dumps,
the DAG folder, the plugins folder, resource.toml and the effective settings, and secrets.env encrypted
with a passphrase (or nothing of the secrets, by choice). The stack may run meanwhile: pg_dump reads
one snapshot. A stopped stack's PostgreSQL is started alone, on a private port, for the dump.
"""

from __future__ import annotations

import contextlib
import os
import json
import shutil
import socket
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

from airflow_resource import __version__
from airflow_resource import safe_files
from airflow_resource.backup import archive
from airflow_resource.backup import auth
from airflow_resource.stack import installer
from airflow_resource.backup import pgdump
from airflow_resource.stack import system
from airflow_resource.errors import CommandError
from airflow_resource.config.secrets import Secrets, render_env_file
from airflow_resource.config.settings import Settings

PREFIX = "airflow-backup-"
SUFFIX = ".tar.gz"
SCHEDULED = "scheduled"
STAMP = "%Y%m%dT%H%M%SZ"
SECRETS_MEMBER = "secrets/secrets.env.fernet"


def archive_name(created: float, kind: str) -> str:
    stamp = datetime.fromtimestamp(created, timezone.utc).strftime(STAMP)
    return f"{PREFIX}{stamp}{'-' + SCHEDULED if kind == SCHEDULED else ''}{SUFFIX}"


def scheduled_archives(folder: Path) -> list[tuple[float, Path]]:
    """The schedule's archives, oldest first, with the time in their name."""
    found = []
    for path in folder.glob(f"{PREFIX}*-{SCHEDULED}{SUFFIX}"):
        stamp = path.name[len(PREFIX):-len(f"-{SCHEDULED}{SUFFIX}")]
        try:
            found.append((datetime.strptime(stamp, STAMP).replace(tzinfo=timezone.utc).timestamp(), path))
        except ValueError:
            continue
    return sorted(found)


def prune(folder: Path, keep: int) -> list[Path]:
    """Delete the oldest scheduled archives beyond `keep`; archives made by hand are never touched."""
    doomed = [path for _, path in scheduled_archives(folder)][:-keep] if keep > 0 else []
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:********@{host}"))


SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY", "CONN")  # Airflow options whose value is likely a secret


def effective_settings(s: Settings) -> dict[str, Any]:
    """The settings for reference, with passwords in URLs and secret-looking Airflow options masked."""
    data = s.to_json()
    for key in ("postgres_url", "redis_url"):
        data[key] = _mask_url(data[key])
    options = data.get("airflow_options") or {}
    data["airflow_options"] = {k: "********" if any(w in k.upper() for w in SECRET_WORDS) else v
                               for k, v in options.items()}
    return data


def _copy_tree(src: Path, dst: Path) -> int:
    """Regular files only (no __pycache__, no links); returns how many."""
    dst.mkdir(parents=True, exist_ok=True)
    count = 0
    if not src.is_dir():
        return count
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if "__pycache__" in rel.parts or path.is_symlink() or not path.is_file():
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dst / rel)
        count += 1
    return count


@contextlib.contextmanager
def database_port(s: Settings, sec: Secrets, who: system.RunAs, running: bool) -> Iterator[int]:
    """The port of the stack's PostgreSQL; when the stack is stopped, of one started alone for the dump."""
    if running:
        yield s.postgres_port
        return
    with pgdump.temporary_server(s.postgres_dir, sec, who) as port:
        yield port


def _data_major(s: Settings) -> str | None:
    """The PostgreSQL major of the data (PG_VERSION); None: no data."""
    try:
        return (s.postgres_dir / "PG_VERSION").read_text().strip()
    except FileNotFoundError:
        return None


def create(s: Settings, sec: Secrets, who: system.RunAs, running: bool, passphrase: str | None,
           output: Path | None = None, kind: str = "manual") -> tuple[Path, dict[str, Any]]:
    """Write one archive; passphrase None leaves the secrets out. Returns its path and manifest."""
    if not s.embedded_postgres:
        raise CommandError("backups cover the embedded PostgreSQL only; this stack uses APACHE_AIRFLOW_POSTGRES_URL",
                           "back that server up with its own tools (pg_dump), and the DAG folder with yours")
    major = _data_major(s)
    if major is None:
        raise CommandError(f"no PostgreSQL data in {s.postgres_dir}: nothing to back up",
                           "run `./cli.sh manage start` first")
    created = time.time()
    dest = (output or s.backups_dir / archive_name(created, kind)).absolute()
    if dest.exists():
        raise CommandError(f"{dest} already exists", "choose another --output, or remove that file first")
    if not dest.parent.is_dir():
        raise CommandError(f"folder {dest.parent} does not exist", "create it, or choose another --output")
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=dest.parent) as tmp:
        root = Path(tmp)
        (root / "database").mkdir()
        with database_port(s, sec, who, running) as port:
            for db in pgdump.DATABASES:
                pgdump.dump(port, sec, db, root / "database" / f"{db}.dump")
        counts = {"dags": _copy_tree(s.dags_dir, root / "dags"), "plugins": _copy_tree(s.plugins_dir, root / "plugins")}
        (root / "config").mkdir()
        config = ["effective.json"]
        (root / "config" / "effective.json").write_text(json.dumps(effective_settings(s), indent=2) + "\n")
        if s.config_file.is_file():
            shutil.copyfile(s.config_file, root / "config" / "resource.toml")
            config.append("resource.toml")
        encryption = None
        if passphrase is not None:
            token, encryption = archive.encrypt(render_env_file(sec).encode(), passphrase)
            (root / "secrets").mkdir()
            (root / SECRETS_MEMBER).write_bytes(token)
        manifest = {
            "format": archive.FORMAT,
            "kind": kind,
            "created": datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="seconds"),
            "created_unix": created,
            "resource_version": __version__,
            "airflow_version": installer.home_airflow_version(s),
            "postgres_major": major,
            "host": socket.gethostname(),
            "home": str(s.home),
            "stack_running": running,
            "contents": {"databases": list(pgdump.DATABASES), **counts, "config": config,
                         "secrets": "encrypted" if encryption else "left out"},
            "secrets_encryption": encryption,
            "fernet_key_sha256": archive.fingerprint(sec.fernet_key),
            "files": archive.file_entries(root),
        }
        # Last: the tag covers every other field, the members' sizes and SHA-256 among them.
        manifest[auth.AUTH] = auth.sign(manifest, passphrase, sec.postgres_superuser_password, archive.SCRYPT)
        archive.write(dest, manifest, root)
    return dest, manifest


def list_archives(folder: Path) -> list[dict[str, Any]]:
    """Every archive in the folder, oldest first; an unreadable one is listed with its error."""
    rows = []
    for path in sorted(folder.glob(f"{PREFIX}*{SUFFIX}")) if folder.is_dir() else []:
        row: dict[str, Any] = {"file": str(path), "size": path.stat().st_size}
        try:
            m = archive.read_manifest(path)
            row.update({k: m.get(k) for k in ("created", "kind", "airflow_version", "postgres_major", "contents")})
            row["authenticated_by"] = auth.described(m)  # what the archive carries tags for, not yet checked
        except CommandError as exc:
            row["error"] = exc.message
        rows.append(row)
    return rows


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def make_folder(s: Settings) -> None:
    """<home>/backups: root's alone (home_layout's table); the schedule runs as root too."""
    safe_files.ensure_dir(s.backups_dir, 0o700, os.geteuid(), os.getegid())
