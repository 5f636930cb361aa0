"""The stack's JWT key pair: Ed25519, private half only on the issuers (api-server, scheduler), public half
as a JWKS file every verifier reads ([api_auth] trusted_jwks_url).

Airflow signs task tokens in the scheduler (its executor's JWTGenerator) and REST API and refreshed task
tokens in the api-server; both verify through the JWKS. A component without the private key cannot forge
a token, which a shared [api_auth] jwt_secret allowed every component (and so every task) to do.
"""

from __future__ import annotations

import base64
import hashlib
import json

ALGORITHM = "EdDSA"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _private(stored: str):  # -> Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization

    return serialization.load_der_private_key(base64.b64decode(stored), password=None)


def private_pem(stored: str) -> str:
    """The PEM Airflow's [api_auth] jwt_private_key_path file holds (secrets.env keeps the DER on one line)."""
    from cryptography.hazmat.primitives import serialization

    return _private(stored).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode()


def _public_x(stored: str) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = _private(stored).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _b64url(raw)


def kid(stored: str) -> str:
    """The key's RFC 7638 thumbprint ("" without a key: placeholder secrets). Set as [api_auth] jwt_kid so
    every issuer names it in the token header and every verifier finds it in the JWKS."""
    if not stored:
        return ""
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": _public_x(stored)}, separators=(",", ":"),
                           sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def jwks(stored: str) -> str:
    """The public JWKS document (no private member)."""
    key = {"kty": "OKP", "crv": "Ed25519", "x": _public_x(stored), "kid": kid(stored), "alg": ALGORITHM, "use": "sig"}
    return json.dumps({"keys": [key]}, indent=1) + "\n"
