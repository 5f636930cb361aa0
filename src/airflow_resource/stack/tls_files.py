"""The certificate files of a home with tls on (config/tls.py names them), written by the root CLI at start.

Generated (no tls_cert_file): a CA (ECDSA P-256, 10 years) made once and kept, and a server certificate it
signs (397 days) for every name this machine's clients use (config/tls.server_names); the server certificate
is issued again when those names change or it nears its end, the CA only when it nears its own, so clients
that trust tls/ca.pem keep trusting it. Given (tls_cert_file, tls_key_file): checked (the key matches, the
certificate names the host the stack reaches) and its chain copied into tls/.
Keys are root's, 0600; the api-server gets its key as a memfd (startup passes api_server_env's variables).
"""

from __future__ import annotations

import datetime
import socket
from pathlib import Path

from airflow_resource import safe_files
from airflow_resource.config import tls
from airflow_resource.config.airflow_config import MEMFD_VARS_ENV
from airflow_resource.config.settings import BY_NAME, Settings
from airflow_resource.errors import CommandError

CA_DAYS, SERVER_DAYS = 3650, 397
RENEW_BEFORE = datetime.timedelta(days=30)
MAX_PEM_BYTES = 1 << 20
PUBLIC_MODE, KEY_MODE = 0o644, 0o600


def _x509():
    from cryptography import x509

    return x509


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _new_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str):
    x509 = _x509()
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "apache-airflow resource"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])


def _san(names: list[str]):
    import ipaddress

    x509 = _x509()
    entries = []
    for n in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


def make_ca(common_name: str):
    """(key, certificate) of a new CA that signs server certificates only."""
    from cryptography.hazmat.primitives import hashes

    x509 = _x509()
    key, now = _new_key(), _now()
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_server(ca_key, ca_cert, names: list[str]):
    """(key, certificate) of a server certificate for `names` signed by the CA."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    x509 = _x509()
    key, now = _new_key(), _now()
    cert = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_san(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def covers(cert, host: str) -> bool:
    """Whether the certificate's subjectAltName names `host` (an IP address or a DNS name, * in the first label)."""
    import ipaddress

    x509 = _x509()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")) in san.get_values_for_type(x509.IPAddress)
    except ValueError:
        pass
    host = host.lower().rstrip(".")
    for dns in san.get_values_for_type(x509.DNSName):
        dns = dns.lower().rstrip(".")
        if dns == host or (dns.startswith("*.") and "." in host and host.split(".", 1)[1] == dns[2:]):
            return True
    return False


def _fresh(cert) -> bool:
    return cert.not_valid_after_utc - _now() > RENEW_BEFORE


def _read(path: Path) -> bytes | None:
    try:
        return safe_files.read_file(path, MAX_PEM_BYTES)
    except FileNotFoundError:
        return None


def _load_pair(cert_path: Path, key_path: Path):
    from cryptography.hazmat.primitives import serialization

    cert_pem, key_pem = _read(cert_path), _read(key_path)
    if not cert_pem or not key_pem:
        return None
    try:
        return (serialization.load_pem_private_key(key_pem, password=None),
                _x509().load_pem_x509_certificates(cert_pem))
    except ValueError:
        return None  # damaged: made anew


def _same_key(key, cert) -> bool:
    from cryptography.hazmat.primitives import serialization

    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return (key.public_key().public_bytes(serialization.Encoding.DER, spki)
            == cert.public_key().public_bytes(serialization.Encoding.DER, spki))


def prepare(s: Settings) -> bytes:
    """Make or check the home's certificate files (tls on); returns the server key's PEM for the api-server."""
    d = tls.tls_dir(s)
    gid = d.stat().st_gid
    if not tls.generated(s):
        return _given(s, gid)
    ca = _load_pair(d / tls.CA_FILE, d / tls.CA_KEY_FILE)
    if ca is None or not _fresh(ca[1][0]) or not _same_key(ca[0], ca[1][0]):
        ca_key, ca_cert = make_ca(f"airflow resource CA {socket.gethostname()} {s.home}")
        safe_files.write_file(d / tls.CA_KEY_FILE, _pem_key(ca_key), KEY_MODE)
        safe_files.write_file(d / tls.CA_FILE, _cert_pem(ca_cert), PUBLIC_MODE, -1, gid)
        server = None
    else:
        (ca_key, (ca_cert, *_)) = ca
        server = _load_pair(d / tls.SERVER_CERT_FILE, d / tls.SERVER_KEY_FILE)
    names = tls.server_names(s, socket.gethostname())
    if (server is None or not _same_key(server[0], server[1][0]) or not _fresh(server[1][0])
            or server[1][0].issuer != ca_cert.subject or not all(covers(server[1][0], n) for n in names)):
        key, cert = make_server(ca_key, ca_cert, names)
        safe_files.write_file(d / tls.SERVER_KEY_FILE, _pem_key(key), KEY_MODE)
        safe_files.write_file(d / tls.SERVER_CERT_FILE, _cert_pem(cert) + _cert_pem(ca_cert), PUBLIC_MODE, -1, gid)
        return _pem_key(key)
    return _pem_key(server[0])


def _given(s: Settings, gid: int) -> bytes:
    """The operator's certificate and key, checked, and the chain copied where every component reads it."""
    from cryptography.hazmat.primitives import serialization

    cert_env, key_env = BY_NAME["tls_cert_file"].env, BY_NAME["tls_key_file"].env
    try:
        chain = _x509().load_pem_x509_certificates(Path(s.tls_cert_file).read_bytes())
    except (OSError, ValueError) as exc:
        raise CommandError(f"tls_cert_file {s.tls_cert_file} is not a readable PEM certificate ({exc})",
                           f"fix {cert_env}") from None
    try:
        key = serialization.load_pem_private_key(Path(s.tls_key_file).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise CommandError(f"tls_key_file {s.tls_key_file} is not a readable, unencrypted PEM private key ({exc})",
                           f"fix {key_env}") from None
    if not _same_key(key, chain[0]):
        raise CommandError(f"the key in {s.tls_key_file} does not belong to the certificate in {s.tls_cert_file}",
                           f"fix {cert_env} or {key_env}")
    if not covers(chain[0], s.api_local_host):
        raise CommandError(f"the certificate in {s.tls_cert_file} does not name {s.api_local_host}, where this "
                           "machine's components reach the api-server", "add it to the certificate's subjectAltName")
    pem = b"".join(_cert_pem(c) for c in chain)
    trust = pem
    if not any(c.issuer == c.subject for c in chain):
        # No root in the chain: a publicly issued certificate; clients trust the public roots as well.
        import certifi

        trust = pem + Path(certifi.where()).read_bytes()
    d = tls.tls_dir(s)
    safe_files.write_file(d / tls.SERVER_CERT_FILE, pem, PUBLIC_MODE, -1, gid)
    safe_files.write_file(d / tls.CA_FILE, trust, PUBLIC_MODE, -1, gid)
    for stale in (tls.CA_KEY_FILE, tls.SERVER_KEY_FILE):  # a generated pair of before: not used now
        safe_files.remove(d / stale)
    return _pem_key(key)


def api_server_env(s: Settings) -> dict[str, str]:
    """What the api-server's env file adds with tls on: the server key's PEM, handed over as a memfd."""
    if not s.tls_on:
        return {}
    return {tls.SSL_KEY_ENV: prepare(s).decode(), MEMFD_VARS_ENV: tls.SSL_KEY_ENV}


def spki_sha256(cert_pem: bytes) -> str:
    """base64 SHA-256 of the certificate's public key (Chromium's --ignore-certificate-errors-spki-list)."""
    import base64
    import hashlib

    from cryptography.hazmat.primitives import serialization

    cert = _x509().load_pem_x509_certificate(cert_pem)
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()

