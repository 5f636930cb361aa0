"""`./cli.sh backup restore`: an archive into a stopped or fresh home, all or nothing.

Everything is built beside what it replaces first: the archive is extracted and checked against its
manifest, the secrets decrypted, a new PostgreSQL cluster initialised and the dumps restored into it
on a private port. Only then are postgres/, redis/ (emptied: queued broker messages belong to the
replaced database), the DAG and plugins folders, secrets.env and resource.toml swapped in by rename.
A refusal before the swap leaves the home as it was; a failed rename puts back what was moved.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

from airflow_resource import AIRFLOW_VERSION, printer
from airflow_resource import safe_files
from airflow_resource.backup import archive
from airflow_resource.backup import auth
from airflow_resource.backup import settings_guard
from airflow_resource.backup import create as backup
from airflow_resource.stack import datastores
from airflow_resource.stack import installer
from airflow_resource.backup import pgdump
from airflow_resource.config import secrets as secrets_mod
from airflow_resource.stack import handle
from airflow_resource.stack import system
from airflow_resource.errors import CommandError
from airflow_resource.config.secrets import Secrets
from airflow_resource.config.settings import Settings

STAGING = ".restore-staging"
CONFIG_MEMBER = "config/resource.toml"
NEW, OLD = "restore-new", "pre-restore"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(".") if x.isdigit())


def check_compatible(manifest: dict[str, Any], machine_pg_major: str | None, airflow_here: str = AIRFLOW_VERSION) -> None:
    """airflow_here: the Airflow the home runs (its pinned set's): an archive from a newer one is refused."""
    pg = str(manifest.get("postgres_major"))
    if machine_pg_major and pg != machine_pg_major:
        raise CommandError(
            f"the backup holds a PostgreSQL {pg} database; this machine runs PostgreSQL {machine_pg_major}",
            f"restore it on a machine with postgresql-{pg}, or upgrade it there first; nothing was changed")
    airflow = str(manifest.get("airflow_version"))
    if _version(airflow) > _version(airflow_here):
        raise CommandError(f"the backup is from Airflow {airflow}, newer than this home's {airflow_here}",
                           "restore it into a home on that Airflow's pinned set (or newer: `./cli.sh manage upgrade` "
                           "moves a home forward); nothing was changed")


def _refuse_running(s: Settings) -> None:
    if handle.is_running(s) or handle.stack_processes(s):
        raise CommandError(f"the stack in {s.home} is running; a restore replaces its database and files",
                           "stop it first (`./cli.sh manage stop`), or restore into a fresh home (APACHE_AIRFLOW_HOME)")


def _secrets(s: Settings, manifest: dict[str, Any], extracted: Path, passphrase: str | None) -> tuple[Secrets, str | None]:
    """The secrets the restored home runs with, and the secrets.env text to write (None: keep the home's)."""
    encryption = manifest.get("secrets_encryption")
    if encryption:
        assert passphrase is not None
        text = archive.decrypt((extracted / backup.SECRETS_MEMBER).read_bytes(), passphrase, encryption).decode()
        sec = secrets_mod.from_mapping(secrets_mod.parse_env_file(text))
        if sec is None:
            raise CommandError("the secrets in the backup are incomplete", "use another archive; nothing was changed")
        return sec, text
    existing = secrets_mod.load(s.secrets_file)
    if existing is None or archive.fingerprint(existing.fernet_key) != manifest.get("fernet_key_sha256"):
        raise CommandError(
            "this backup holds no secrets, and the Fernet key its connections and variables are encrypted with "
            f"is not the one in {s.secrets_file}",
            "restore a backup made with a passphrase, or put the original secrets.env in place; nothing was changed")
    return existing, None


def _chown_tree(root: Path, who: system.RunAs) -> None:
    """The restored dags and plugins folders: root's, readable by the service group (home_layout's table),
    chowned through directory fds (no link in the archive's tree is followed). Extraction wrote every file
    0600: folders become 0750 and files 0640, or the dag-processor could not read one."""
    if not system.is_root():
        return
    safe_files.chown_tree(root, os.geteuid(), who.gid, 0o750, below=(0o750, 0o640))


def _beside(target: Path, tag: str) -> Path:
    """A name next to target (same file system, so a rename swaps it)."""
    return target.with_name(f".{target.name}.{tag}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def swap_in(pairs: list[tuple[Path, Path]]) -> None:
    """Rename each staged path over its target, the old one set aside; on a failure put everything back.
    The old ones are deleted only when every rename succeeded."""
    done: list[tuple[Path, Path, bool]] = []
    try:
        for new, target in pairs:
            aside = _beside(target, OLD)
            _remove(aside)
            had = target.exists() or target.is_symlink()
            if had:
                os.rename(target, aside)
            done.append((new, target, had))
            os.rename(new, target)
    except OSError:
        for new, target, had in reversed(done):
            if target.exists() and not new.exists():
                os.rename(target, new)
            if had:
                os.rename(_beside(target, OLD), target)
        raise
    for _new, target, had in done:
        if had:
            _remove(_beside(target, OLD))


def _home_secret(s: Settings) -> str | None:
    """The secret this home's archives are tagged with (auth.HOME_SECRET); None in a fresh or damaged home."""
    try:
        existing = secrets_mod.load(s.secrets_file)
    except CommandError:
        return None
    return getattr(existing, auth.HOME_SECRET) if existing else None


def restore(s: Settings, path: Path, passphrase_file: Path | None, force: bool,
            allow_unauthenticated: bool = False, accept_settings: bool = False) -> dict[str, Any]:
    """force: replace the database the home holds; accept_settings: take the archive's resource.toml even where
    it changes a path, a user or a program (a separate word: replacing a database says nothing about those)."""
    _refuse_running(s)
    if not path.is_file():
        raise CommandError(f"{path}: no such archive", "`./cli.sh backup list` shows the archives in <home>/backups")
    if not s.embedded_postgres:
        raise CommandError("restore covers the embedded PostgreSQL only; this home uses APACHE_AIRFLOW_POSTGRES_URL",
                           "restore that server with its own tools (pg_restore)")
    manifest = archive.read_manifest(path)
    passphrase = None
    if manifest.get("secrets_encryption") or auth.needs_passphrase(manifest):
        passphrase = archive.read_passphrase(passphrase_file, configured=s.backup_passphrase_file)
    # Nothing in the manifest is believed, and nothing extracted, before its tag is checked.
    printer.step(f"authenticating {path.name}")
    vouched = auth.verify(path, manifest, passphrase, _home_secret(s), allow_unauthenticated)
    check_compatible(manifest, system.pg_major(pgdump.pg_bindir()), installer.home_airflow_version(s))
    if datastores.is_initialised(s) and not force:
        raise CommandError(f"{s.home} already holds a metadata database; a restore replaces it",
                           "back it up first (`./cli.sh backup create`), then pass --force; or restore into a fresh home")
    if manifest.get("secrets_encryption") and passphrase is None:
        raise CommandError("the secrets in this backup are encrypted with a passphrase",
                           f"give it with --passphrase-file FILE or {archive.PASSPHRASE_ENV}; nothing was changed")
    toml = archive.read_member(path, CONFIG_MEMBER, manifest)
    settings_guard.check(settings_guard.changes(s.home, s.config_file, toml), accept_settings)
    installer.check_home_owner(s)
    system.install_packages(system.missing_packages(True, False))
    who = system.ensure_service_user(s.service_user, s.home)
    data = system.ensure_data_user(s.data_user, who, s.home)
    fresh = not s.home.exists()
    gid = who.gid if system.is_root() else -1
    safe_files.ensure_dir(s.home, 0o750, os.geteuid(), gid)
    staging = s.home / STAGING
    _remove(staging)
    # root's; the data user (the service group) may only pass through to the new cluster
    safe_files.ensure_dir(staging, 0o710, os.geteuid(), gid)
    staged: list[Path] = []
    try:
        pairs = _stage(s, manifest, path, passphrase, who, staging, staged, data)
        swap_in(pairs)
    except BaseException:
        for p in staged:
            _remove(p)
        _remove(staging)
        if fresh:
            shutil.rmtree(s.home, ignore_errors=True)
        raise
    _remove(staging)
    # The next start migrates (an older Airflow's schema) and sets the admin's password from the secrets.
    for marker in list(s.airflow_home.glob(".migrated-*")) + list(s.airflow_home.glob(".admin-*")):
        marker.unlink()
    if not installer.is_installed(s):
        installer.install(s, examples=False)
    return {**manifest, "authenticated_by": vouched}


def _stage(s: Settings, manifest: dict[str, Any], path: Path, passphrase: str | None, who: system.RunAs,
           staging: Path, staged: list[Path], data: system.RunAs) -> list[tuple[Path, Path]]:
    """Build everything the restore puts in place; returns (staged path, target) pairs."""
    extracted = staging / "archive"
    printer.step(f"checking {path.name} against its manifest")
    archive.extract_verified(path, extracted, manifest)
    sec, secrets_text = _secrets(s, manifest, extracted, passphrase)
    stage_s = dataclasses.replace(s, home=staging)
    safe_files.ensure_dir(stage_s.run_dir, 0o710, os.geteuid(), who.gid if system.is_root() else -1)
    datastores.initdb(stage_s, sec, data, pgdump.pg_bindir())
    with pgdump.temporary_server(stage_s.postgres_dir, sec, who) as port:
        datastores.ensure_roles_and_databases(dataclasses.replace(s, postgres_port=port), sec)
        for db in manifest["contents"]["databases"]:
            printer.step(f"restoring database {db}")
            pgdump.restore(port, sec, db, extracted / "database" / f"{db}.dump")
    pairs = [(stage_s.postgres_dir, s.postgres_dir)]
    for name, target in (("dags", s.dags_dir), ("plugins", s.plugins_dir)):
        new = _beside(target, NEW)
        _remove(new)
        staged.append(new)
        target.parent.mkdir(parents=True, exist_ok=True)
        if (extracted / name).is_dir():
            shutil.copytree(extracted / name, new)
        else:
            new.mkdir()  # the backup's folder was empty
        _chown_tree(new, who)
        pairs.append((new, target))
    redis = _beside(s.redis_dir, NEW)
    _remove(redis)
    staged.append(redis)
    system.make_dir(redis, data, 0o700)
    pairs.append((redis, s.redis_dir))
    if secrets_text is not None:
        new = _beside(s.secrets_file, NEW)
        staged.append(new)
        secrets_mod.write_private(new, secrets_text)
        pairs.append((new, s.secrets_file))
    if (extracted / CONFIG_MEMBER).is_file():
        new = _beside(s.config_file, NEW)
        staged.append(new)
        shutil.copyfile(extracted / CONFIG_MEMBER, new)
        pairs.append((new, s.config_file))
    return pairs
