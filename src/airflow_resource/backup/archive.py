"""The backup archive format: a tar.gz whose first member is manifest.json (versions, time, contents, the
SHA-256 of every other member), and the passphrase encryption of the secrets in it.

Written to a 0600 partial file and renamed, so an archive under its name is complete. Read as a stream:
`./cli.sh backup list` stops after the manifest; a restore checks every member against it while extracting.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from airflow_resource.errors import CommandError

FORMAT = 1
MANIFEST = "manifest.json"
ARCHIVE_MODE = 0o600
PASSPHRASE_ENV = "APACHE_AIRFLOW_BACKUP_PASSPHRASE"
# scrypt at n=2**15, r=8: 32 MiB and ~0.1 s per guess, OWASP's minimum for interactive use.
SCRYPT = {"n": 2**15, "r": 8, "p": 1}
SALT_BYTES = 16
CHUNK = 1 << 20
READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, ValueError, KeyError)


def damaged(path: Path, why: str) -> CommandError:
    return CommandError(f"{path} is damaged or not a backup archive: {why}",
                        "use another archive (`./cli.sh backup list`); nothing was changed")


# ---------------------------------------------------------------- passphrase encryption

def read_passphrase(path: Path | None, environ: Mapping[str, str] | None = None,
                    configured: str = "") -> str | None:
    """From --passphrase-file, else APACHE_AIRFLOW_BACKUP_PASSPHRASE, else the backup_passphrase_file
    setting (configured); never from argv. The first line of a file is the passphrase."""
    environ = os.environ if environ is None else environ
    if path is None and environ.get(PASSPHRASE_ENV):
        return environ[PASSPHRASE_ENV]
    path = path or (Path(configured) if configured else None)
    if path is None:
        return None
    try:
        text = path.read_text()
    except OSError as exc:
        raise CommandError(f"cannot read the passphrase file {path}: {exc.strerror}",
                           "give a readable file with --passphrase-file") from None
    passphrase = text.splitlines()[0] if text.strip() else ""
    if not passphrase:
        raise CommandError(f"the passphrase file {path} is empty", "write the passphrase on its first line")
    return passphrase


def _key(passphrase: str, salt: bytes, params: Mapping[str, Any]) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    kdf = Scrypt(salt=salt, length=32, n=int(params["n"]), r=int(params["r"]), p=int(params["p"]))
    return base64.urlsafe_b64encode(kdf.derive(passphrase.encode()))


def encrypt(data: bytes, passphrase: str) -> tuple[bytes, dict[str, Any]]:
    """Fernet (AES-128-CBC + HMAC-SHA256) under a scrypt key; returns the token and the KDF parameters."""
    from cryptography.fernet import Fernet

    salt = os.urandom(SALT_BYTES)
    return (Fernet(_key(passphrase, salt, SCRYPT)).encrypt(data),
            {"cipher": "fernet", "kdf": "scrypt", **SCRYPT, "salt": base64.b64encode(salt).decode()})


def decrypt(token: bytes, passphrase: str, params: Mapping[str, Any]) -> bytes:
    from cryptography.fernet import Fernet, InvalidToken

    try:
        return Fernet(_key(passphrase, base64.b64decode(params["salt"]), params)).decrypt(token)
    except InvalidToken:
        raise CommandError("wrong passphrase: the secrets in this backup do not decrypt with it",
                           "give the passphrase the backup was made with; nothing was changed") from None


def fingerprint(secret: str) -> str:
    """SHA-256 of a random 256-bit key: tells two keys apart, reveals nothing of them."""
    return hashlib.sha256(secret.encode()).hexdigest()


# ---------------------------------------------------------------- writing

def file_entries(root: Path) -> list[dict[str, Any]]:
    """Path (relative, POSIX), size and SHA-256 of every regular file under root, sorted."""
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        entries.append({"path": path.relative_to(root).as_posix(), "size": path.stat().st_size,
                        "sha256": digest.hexdigest()})
    return entries


def _tarinfo(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, int(mtime)
    return info


def write(dest: Path, manifest: dict[str, Any], root: Path) -> None:
    """manifest.json first, then every file of root as listed in manifest["files"]; 0600 from the first byte."""
    partial = dest.with_name(f".{dest.name}.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, ARCHIVE_MODE)
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
                body = json.dumps(manifest, indent=2).encode()
                tar.addfile(_tarinfo(MANIFEST, len(body), manifest["created_unix"]), io.BytesIO(body))
                for entry in manifest["files"]:
                    path = root / entry["path"]
                    with path.open("rb") as f:
                        tar.addfile(_tarinfo(entry["path"], entry["size"], manifest["created_unix"]), f)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- reading

def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest alone (the first member): what `./cli.sh backup list` shows, without reading the rest."""
    try:
        with tarfile.open(path, "r|gz") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                raise damaged(path, f"its first member is not {MANIFEST}")
            manifest = json.loads(tar.extractfile(first).read())  # type: ignore[union-attr]
    except READ_ERRORS as exc:
        raise damaged(path, f"{type(exc).__name__}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), list):
        raise damaged(path, f"unknown manifest format {manifest.get('format') if isinstance(manifest, dict) else '?'}")
    return manifest


def _safe_member_path(name: str) -> PurePosixPath | None:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        return None
    return p


def extract_verified(path: Path, dest: Path) -> dict[str, Any]:
    """Extract every member into dest, checking each against the manifest's size and SHA-256.

    Only regular files listed in the manifest are accepted (no links, devices, absolute or '..' paths)."""
    try:
        with tarfile.open(path, "r|gz") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST:
                raise damaged(path, f"its first member is not {MANIFEST}")
            manifest = json.loads(tar.extractfile(first).read())  # type: ignore[union-attr]
            expected = {e["path"]: e for e in manifest["files"]}
            seen: set[str] = set()
            while (member := tar.next()) is not None:
                rel = _safe_member_path(member.name)
                entry = expected.get(member.name)
                if rel is None or entry is None or not member.isfile() or member.name in seen:
                    raise damaged(path, f"unexpected member {member.name!r}")
                target = dest.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                digest, size = hashlib.sha256(), 0
                src = tar.extractfile(member)
                assert src is not None
                with target.open("wb") as out:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
                    raise damaged(path, f"checksum mismatch in {member.name}")
                seen.add(member.name)
    except CommandError:
        raise
    except READ_ERRORS as exc:
        raise damaged(path, f"{type(exc).__name__}: {exc}") from None
    missing = sorted(set(expected) - seen)
    if missing:
        raise damaged(path, f"{len(missing)} member(s) missing, e.g. {missing[0]}")
    return manifest
