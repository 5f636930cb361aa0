"""The backup archive format: a tar.gz whose first member is manifest.json (versions, time, contents, the
SHA-256 of every other member), and the passphrase encryption of the secrets in it.

Written to a 0600 partial file and renamed, so an archive under its name is complete. Read as a stream:
`./cli.sh backup list` stops after the manifest; a restore authenticates the manifest first (auth.py),
then streams every member against it, each capped at its declared size.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
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

MANIFEST_MAX = 16 << 20  # a manifest of 100 000 files is ~15 MiB; a bigger one is not read into memory
SHA256_HEX = frozenset("0123456789abcdef")


def _parse_manifest(path: Path, tar: tarfile.TarFile) -> tuple[dict[str, Any], bytes]:
    first = tar.next()
    if first is None or first.name != MANIFEST or not first.isfile():
        raise damaged(path, f"its first member is not {MANIFEST}")
    if first.size > MANIFEST_MAX:
        raise damaged(path, f"its {MANIFEST} is {first.size} bytes, more than {MANIFEST_MAX}")
    body = tar.extractfile(first).read()  # type: ignore[union-attr]
    manifest = json.loads(body)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), list):
        raise damaged(path, f"unknown manifest format {manifest.get('format') if isinstance(manifest, dict) else '?'}")
    _check_entries(path, manifest["files"])
    return manifest, body


def _check_entries(path: Path, entries: list[Any]) -> None:
    """Each entry a safe, canonical relative path (listed once), a size and a SHA-256: what extraction trusts."""
    seen: set[str] = set()
    for e in entries:
        ok = (isinstance(e, dict) and isinstance(e.get("path"), str) and type(e.get("size")) is int
              and e["size"] >= 0 and isinstance(e.get("sha256"), str) and len(e["sha256"]) == 64
              and set(e["sha256"]) <= SHA256_HEX)
        rel = _safe_member_path(e["path"]) if ok else None
        if rel is None or rel.as_posix() != e["path"] or e["path"] == MANIFEST or e["path"] in seen:
            raise damaged(path, f"its manifest lists an unusable entry {str(e)[:200]!r}")
        seen.add(e["path"])


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest alone (the first member): what `./cli.sh backup list` shows, without reading the rest.
    Not yet authenticated: auth.verify() says whether to trust it."""
    try:
        with tarfile.open(path, "r|gz") as tar:
            return _parse_manifest(path, tar)[0]
    except CommandError:
        raise
    except READ_ERRORS as exc:
        raise damaged(path, f"{type(exc).__name__}: {exc}") from None


def _safe_member_path(name: str) -> PurePosixPath | None:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or "." in name.split("/") or not p.parts or "\0" in name:
        return None
    return p


def _copy_capped(path: Path, name: str, src: Any, target: Path, entry: dict[str, Any]) -> None:
    """Stream one member into target, hashing as it goes; past the declared size, or with another hash,
    the partial file is removed and the archive refused. Never writes more than the manifest declares."""
    declared = entry["size"]
    digest, size = hashlib.sha256(), 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read(min(CHUNK, declared - size + 1)):
                size += len(chunk)
                if size > declared:
                    raise damaged(path, f"member {name} is longer than the {declared} bytes its manifest declares")
                digest.update(chunk)
                out.write(chunk)
        if size != declared or not hmac.compare_digest(digest.hexdigest(), entry["sha256"]):
            raise damaged(path, f"checksum mismatch in {name}: it is not the file the manifest lists")
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def extract_verified(path: Path, dest: Path, expected: dict[str, Any] | None = None) -> dict[str, Any]:
    """Extract every member into dest (created, 0700), each capped at and checked against the manifest's
    size and SHA-256. expected: the manifest already authenticated; the archive's must be the same one
    (the file may have been replaced since it was read).

    Only regular files listed in the manifest are accepted (no links, devices, sparse files, absolute,
    '.' or '..' paths); a member whose header declares another size is refused before it is read."""
    try:
        with tarfile.open(path, "r|gz") as tar:
            manifest, _body = _parse_manifest(path, tar)
            if expected is not None and manifest != expected:
                raise damaged(path, "its manifest is not the one that was checked (was the file replaced?)")
            entries = {e["path"]: e for e in manifest["files"]}
            dest.mkdir(mode=0o700)
            seen: set[str] = set()
            while (member := tar.next()) is not None:
                rel = _safe_member_path(member.name)
                entry = entries.get(member.name)
                if (rel is None or entry is None or not member.isfile() or member.issparse()
                        or member.name in seen):
                    raise damaged(path, f"unexpected member {member.name!r} (not a regular file its manifest lists)")
                if member.size != entry["size"]:
                    raise damaged(path, f"member {member.name} is {member.size} bytes; its manifest declares "
                                        f"{entry['size']}")
                target = dest.joinpath(*rel.parts)
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                _copy_capped(path, member.name, tar.extractfile(member), target, entry)
                seen.add(member.name)
    except CommandError:
        raise
    except READ_ERRORS as exc:
        raise damaged(path, f"{type(exc).__name__}: {exc}") from None
    missing = sorted(set(entries) - seen)
    if missing:
        raise damaged(path, f"{len(missing)} member(s) missing, e.g. {missing[0]}")
    return manifest


def read_member(path: Path, name: str, expected: dict[str, Any], limit: int = 1 << 20) -> bytes | None:
    """One small member, checked like extraction checks it, read into memory (None when the manifest does not
    list it): lets a restore look at the archive's resource.toml before it changes anything."""
    entry = next((e for e in expected["files"] if e["path"] == name), None)
    if entry is None:
        return None
    if entry["size"] > limit:
        raise damaged(path, f"its {name} is {entry['size']} bytes, more than {limit}")
    try:
        with tarfile.open(path, "r|gz") as tar:
            if _parse_manifest(path, tar)[0] != expected:
                raise damaged(path, "its manifest is not the one that was checked (was the file replaced?)")
            while (member := tar.next()) is not None:
                if member.name != name:
                    continue
                if not member.isfile() or member.issparse() or member.size != entry["size"]:
                    raise damaged(path, f"member {name} is not the {entry['size']}-byte file its manifest declares")
                data = tar.extractfile(member).read(entry["size"] + 1)  # type: ignore[union-attr]
                if len(data) != entry["size"] or not hmac.compare_digest(hashlib.sha256(data).hexdigest(),
                                                                         entry["sha256"]):
                    raise damaged(path, f"checksum mismatch in {name}: it is not the file the manifest lists")
                return data
    except CommandError:
        raise
    except READ_ERRORS as exc:
        raise damaged(path, f"{type(exc).__name__}: {exc}") from None
    raise damaged(path, f"member {name} is missing")
