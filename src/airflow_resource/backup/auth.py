"""The manifest's authentication: an HMAC-SHA256 over its canonical bytes, checked before any member
is extracted. The manifest lists every member's size and SHA-256, so a valid tag vouches for the whole
archive: a restore streams each member against it.

Two keys, each in its own block of manifest["auth"]:
- passphrase: scrypt (the KDF of the secrets member, with its own salt) then HKDF-SHA256 with an info
  string of its own, so the tag key is never the encryption key. Any home that knows the passphrase
  can check it (a restore into a fresh home).
- home: HKDF-SHA256 of the home's PostgreSQL superuser password, the secret only the root CLI and the
  backup schedule hold (tasks run as the service user and never get it). Archives made without a
  passphrase (--no-secrets, the pre-upgrade and pre-rollback backups, a schedule without a passphrase
  file) carry this one only: they go back into the home whose secrets.env made them, which their
  Fernet-key fingerprint already requires.
Each block has a short "check" (an HMAC of a constant) so a restore tells a wrong passphrase, or another
home's archive, from a tampered one. An archive without "auth" predates this: refused unless the
operator says --allow-unauthenticated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any, Mapping

from airflow_resource import printer
from airflow_resource.errors import CommandError

AUTH = "auth"
ALGORITHM = "hmac-sha256"
PASSPHRASE_INFO = b"airflow_resource backup manifest v1: passphrase"
HOME_INFO = b"airflow_resource backup manifest v1: home"
HOME_SECRET = "postgres_superuser_password"  # the Secrets field the home key comes from
CHECK_TEXT = b"key check"
CHECK_HEX = 16  # 64 bits: tells keys apart; a wrong key that matches by chance still fails the tag
ALLOW_FLAG = "--allow-unauthenticated"


def canonical(manifest: Mapping[str, Any]) -> bytes:
    """The bytes the tag covers: the manifest without its auth block, keys sorted, no spaces."""
    body = {k: v for k, v in manifest.items() if k != AUTH}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _hkdf(material: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)


def passphrase_key(passphrase: str, params: Mapping[str, Any]) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
    if not (2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 16 and 1 <= p <= 4):
        raise ValueError("scrypt parameters out of range")  # the auth block is not covered by its own tag
    kdf = Scrypt(salt=base64.b64decode(params["salt"]), length=32, n=n, r=r, p=p)
    return _hkdf(kdf.derive(passphrase.encode()), PASSPHRASE_INFO)


def home_key(secret: str) -> bytes:
    return _hkdf(secret.encode(), HOME_INFO)


def _mac(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _block(key: bytes, manifest: Mapping[str, Any]) -> dict[str, str]:
    return {"check": _mac(key, CHECK_TEXT)[:CHECK_HEX], "tag": _mac(key, canonical(manifest))}


def sign(manifest: dict[str, Any], passphrase: str | None, home_secret: str | None,
         scrypt: Mapping[str, int]) -> dict[str, Any]:
    """The auth block for this manifest (set it as manifest["auth"] last: the tag covers everything else)."""
    auth: dict[str, Any] = {"algorithm": ALGORITHM}
    if passphrase is not None:
        params = {"kdf": "scrypt", **scrypt, "salt": base64.b64encode(os.urandom(16)).decode()}
        auth["passphrase"] = {**params, **_block(passphrase_key(passphrase, params), manifest)}
    if home_secret:
        auth["home"] = {"secret": HOME_SECRET, **_block(home_key(home_secret), manifest)}
    return auth


def described(manifest: Mapping[str, Any]) -> str:
    """Which keys the archive carries a tag for (not verified): what `backup list` shows."""
    auth = manifest.get(AUTH)
    found = [k for k in ("passphrase", "home") if isinstance(auth, dict) and isinstance(auth.get(k), dict)]
    return "+".join(found) if found else "none"


def needs_passphrase(manifest: Mapping[str, Any]) -> bool:
    auth = manifest.get(AUTH)
    return isinstance(auth, dict) and isinstance(auth.get("passphrase"), dict)


def _matches(block: Mapping[str, Any], key: bytes, manifest: Mapping[str, Any]) -> tuple[bool, bool]:
    """(the key is the one the block was made with, the tag is valid)."""
    expected = _block(key, manifest)
    return (hmac.compare_digest(str(block.get("check", "")), expected["check"]),
            hmac.compare_digest(str(block.get("tag", "")), expected["tag"]))


def tampered(path: Path, key: str) -> CommandError:
    return CommandError(
        f"{path} was altered after it was made: its manifest does not match its authentication tag "
        f"(checked with the {key} key)",
        "do not restore it; use another archive (`./cli.sh backup list`); nothing was changed")


def verify(path: Path, manifest: Mapping[str, Any], passphrase: str | None, home_secret: str | None,
           allow_unauthenticated: bool = False) -> str:
    """Which key vouches for the manifest ("home", "passphrase"; "none" when allowed without); raises otherwise.
    The home key is tried first: it is the one no task can read."""
    auth = manifest.get(AUTH)
    if auth is None:
        return _unauthenticated(path, allow_unauthenticated, "it has no authentication tag (made before backups "
                                "were authenticated, or the tag was removed)")
    if not isinstance(auth, dict) or auth.get("algorithm") != ALGORITHM:
        raise tampered(path, "archive's")
    home, block = auth.get("home"), auth.get("passphrase")
    if isinstance(home, dict) and home_secret:
        same_key, valid = _matches(home, home_key(home_secret), manifest)
        if same_key:
            if not valid:
                raise tampered(path, "home")
            if isinstance(block, dict) and passphrase is not None:
                _check_passphrase(path, block, passphrase, manifest)  # a wrong one named now, not after extraction
            return "home"
    if isinstance(block, dict):
        if passphrase is None:
            raise CommandError("this backup's manifest is authenticated with its passphrase: none given",
                               "give it with --passphrase-file FILE or APACHE_AIRFLOW_BACKUP_PASSPHRASE; "
                               "nothing was changed")
        if not _check_passphrase(path, block, passphrase, manifest):
            raise tampered(path, "passphrase")
        return "passphrase"
    if isinstance(home, dict):
        return _unauthenticated(path, allow_unauthenticated, "it was made without a passphrase, so only the "
                                "secrets of the home that made it can check it, and this home's are not those")
    raise tampered(path, "archive's")


def _check_passphrase(path: Path, block: Mapping[str, Any], passphrase: str, manifest: Mapping[str, Any]) -> bool:
    """Whether the passphrase block's tag is valid; a passphrase other than the block's is refused as wrong."""
    try:
        key = passphrase_key(passphrase, block)
    except (KeyError, ValueError, TypeError):
        raise tampered(path, "passphrase") from None
    same_key, valid = _matches(block, key, manifest)
    if not same_key:
        raise CommandError(f"wrong passphrase for {path.name}: its manifest's tag was made with another one",
                           "give the passphrase the backup was made with; nothing was changed")
    return valid


def _unauthenticated(path: Path, allowed: bool, why: str) -> str:
    if not allowed:
        raise CommandError(
            f"{path.name} cannot be authenticated: {why}; a changed manifest, dump, DAG or resource.toml "
            "would go unnoticed",
            f"restore an archive made by this version with a passphrase, or, if you know this one never left "
            f"your control, pass {ALLOW_FLAG}; nothing was changed")
    printer.warn(f"{path.name} is NOT authenticated ({why}): restoring it because of {ALLOW_FLAG}; "
                 "its members are still checked against its manifest, but nothing vouches for the manifest")
    return "none"
