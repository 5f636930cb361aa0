"""The public JWKS every component verifies tokens against: the current key, plus keys a rotation retired
and still trusts until the tokens they signed have expired.

Airflow reads a local JWKS once per process (api_fastapi/auth/tokens.py: JWKS._should_fetch_jwks), so a
change of this file reaches a verifier (the api-server) only when it restarts: `credentials rotate jwt`
restarts it after writing the file, and `credentials rotate --drop-old-jwt-keys` (or the next start)
drops the keys whose grace is over. run/jwks-retired.json holds the retired public keys (no secret) and
when each stops being trusted; it is root's like the JWKS itself.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from airflow_resource.config import jwt_keys
from airflow_resource.config import secrets as secrets_mod

RETIRED_FILE = "jwks-retired.json"
# Airflow's defaults ([api_auth] and [execution_api] jwt_expiration_time): REST/UI tokens, task tokens.
DEFAULT_REST_TOKEN_S = 86400
DEFAULT_TASK_TOKEN_S = 600
LEEWAY_S = 60  # clocks and Airflow's own [api_auth] jwt_leeway (10 s)


def retired_path(run_dir: Path) -> Path:
    return run_dir / RETIRED_FILE


def public_jwk(stored_private: str) -> dict[str, Any]:
    """The public JWK of a stored private key (the member of the JWKS jwt_keys.jwks writes)."""
    return json.loads(jwt_keys.jwks(stored_private))["keys"][0]


def token_lifetime(airflow_env: dict[str, str]) -> int:
    """The longest a token issued now stays valid: REST/UI tokens or task tokens, whichever is longer."""
    def seconds(key: str, default: int) -> int:
        try:
            return int(airflow_env.get(key) or default)
        except ValueError:
            return default

    return max(seconds("AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME", DEFAULT_REST_TOKEN_S),
               seconds("AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME", DEFAULT_TASK_TOKEN_S)) + LEEWAY_S


def load_retired(run_dir: Path) -> list[dict[str, Any]]:
    """[{"jwk": {...}, "not_after": epoch seconds}]; a missing or unreadable file: none."""
    try:
        data = json.loads(retired_path(run_dir).read_text())
    except (OSError, ValueError):
        return []
    return [r for r in data.get("retired", []) if isinstance(r, dict) and "jwk" in r and "not_after" in r]


def save_retired(run_dir: Path, retired: list[dict[str, Any]]) -> None:
    secrets_mod.write_public(retired_path(run_dir), json.dumps({"retired": retired}, indent=1) + "\n")


def retire(run_dir: Path, old_private: str, not_after: float) -> list[dict[str, Any]]:
    """Keep the old key's public half trusted until not_after (idempotent: one entry per key id)."""
    jwk = public_jwk(old_private)
    kept = [r for r in load_retired(run_dir) if r["jwk"].get("kid") != jwk["kid"]]
    kept.append({"jwk": jwk, "not_after": not_after})
    save_retired(run_dir, kept)
    return kept


def render(current_private: str, retired: list[dict[str, Any]], now: float | None = None) -> str:
    """The JWKS: the current key first, then each retired key still within its grace."""
    now = time.time() if now is None else now
    keys = [public_jwk(current_private)]
    seen = {keys[0]["kid"]}
    for r in retired:
        if r["not_after"] > now and r["jwk"].get("kid") not in seen:
            keys.append(r["jwk"])
            seen.add(r["jwk"]["kid"])
    return json.dumps({"keys": keys}, indent=1) + "\n"


def write(jwks_file: Path, current_private: str, now: float | None = None) -> list[dict[str, Any]]:
    """Write the JWKS with the retired keys still in their grace; forget the expired ones. Returns the
    retired keys kept."""
    now = time.time() if now is None else now
    run_dir = jwks_file.parent
    retired = load_retired(run_dir)
    kept = [r for r in retired if r["not_after"] > now]
    secrets_mod.write_public(jwks_file, render(current_private, kept, now))
    if kept != retired:
        save_retired(run_dir, kept)
    return kept


def trusted_kids(jwks_file: Path) -> list[str]:
    try:
        return [k.get("kid", "") for k in json.loads(jwks_file.read_text()).get("keys", [])]
    except (OSError, ValueError):
        return []
