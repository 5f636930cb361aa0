"""secrets: generated once into a 0600 file, overridable from the environment, never readable by others."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from airflow_resource.config import secrets
from airflow_resource.config import settings
from airflow_resource.errors import CommandError
from airflow_resource.config.secrets import Secrets

pytestmark = pytest.mark.unit

FIELDS = [f.name for f in dataclasses.fields(Secrets)]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def path(home: Path) -> Path:
    return home / "secrets.env"


def test_ensure_creates_a_private_file(path):
    sec, created = secrets.ensure(path, environ={})
    assert created is True
    assert path.exists()
    assert mode(path) == 0o600
    stored = secrets.parse_env_file(path.read_text())
    assert stored == sec.as_env()
    assert not list(path.parent.glob(".*.tmp"))  # the temp file was renamed, not left behind


def test_ensure_is_private_even_with_a_permissive_umask(path):
    old = os.umask(0)
    try:
        secrets.ensure(path, environ={})
    finally:
        os.umask(old)
    assert mode(path) == 0o600


def test_generated_values_are_distinct_and_non_empty(path):
    sec, _ = secrets.ensure(path, environ={})
    values = [getattr(sec, f) for f in FIELDS]
    assert all(values)
    assert len(set(values)) == len(values)
    assert all(len(v) >= 24 for v in values)


def test_two_homes_get_different_secrets(tmp_path):
    a, _ = secrets.ensure(tmp_path / "a.env", environ={})
    b, _ = secrets.ensure(tmp_path / "b.env", environ={})
    assert all(getattr(a, f) != getattr(b, f) for f in FIELDS)


def test_ensure_is_stable(path):
    first, created = secrets.ensure(path, environ={})
    text = path.read_text()
    second, created_again = secrets.ensure(path, environ={})
    assert created and not created_again
    assert second == first
    assert path.read_text() == text
    assert secrets.load(path, environ={}) == first


def test_value_from_environment_on_creation(path):
    env = {"APACHE_AIRFLOW_ADMIN_PASSWORD": "chosen-by-user"}
    sec, _ = secrets.ensure(path, environ=env)
    assert sec.admin_password == "chosen-by-user"
    assert sec.flower_password not in ("", "chosen-by-user")
    assert secrets.parse_env_file(path.read_text())["APACHE_AIRFLOW_ADMIN_PASSWORD"] == "chosen-by-user"


def test_environment_overrides_the_file_on_load(path):
    stored, _ = secrets.ensure(path, environ={})
    sec = secrets.load(path, environ={"APACHE_AIRFLOW_REDIS_PASSWORD": "override"})
    assert sec.redis_password == "override"
    assert sec.postgres_password == stored.postgres_password
    # an empty variable does not count as set
    assert secrets.load(path, environ={"APACHE_AIRFLOW_REDIS_PASSWORD": ""}).redis_password == stored.redis_password


def test_missing_key_is_added_to_an_old_file(path):
    old = {"APACHE_AIRFLOW_FERNET_KEY": Fernet.generate_key().decode(),
           "APACHE_AIRFLOW_ADMIN_PASSWORD": "old-admin",
           "APACHE_AIRFLOW_POSTGRES_PASSWORD": "old-pg"}
    secrets.write_private(path, "# an older version\n" + "".join(f"{k}={v}\n" for k, v in old.items()))
    sec, created = secrets.ensure(path, environ={})
    assert created is False
    assert sec.admin_password == "old-admin"
    assert sec.postgres_password == "old-pg"
    assert sec.fernet_key == old["APACHE_AIRFLOW_FERNET_KEY"]
    stored = secrets.parse_env_file(path.read_text())
    assert set(stored) == {Secrets.env_name(f) for f in FIELDS}
    assert {k: stored[k] for k in old} == old
    assert stored["APACHE_AIRFLOW_FLOWER_PASSWORD"] == sec.flower_password != ""
    assert mode(path) == 0o600
    assert secrets.ensure(path, environ={})[0] == sec  # the added ones are now stable too


def test_adding_a_key_keeps_stored_values_despite_an_env_override(path):
    """Fixed: an environment override is runtime-only, even when ensure rewrites the file to add a missing key."""
    secrets.write_private(path, "APACHE_AIRFLOW_ADMIN_PASSWORD=stored-admin\n")
    sec, _ = secrets.ensure(path, environ={"APACHE_AIRFLOW_ADMIN_PASSWORD": "just-this-once"})
    assert sec.admin_password == "just-this-once"
    assert secrets.parse_env_file(path.read_text())["APACHE_AIRFLOW_ADMIN_PASSWORD"] == "stored-admin"


def test_load_refuses_a_file_readable_by_others(path):
    secrets.ensure(path, environ={})
    path.chmod(0o644)
    with pytest.raises(CommandError) as exc:
        secrets.load(path, environ={})
    assert str(path) in exc.value.message
    assert "644" in exc.value.message
    assert f"chmod 600 {path}" in exc.value.hint
    with pytest.raises(CommandError):
        secrets.ensure(path, environ={})


@pytest.mark.parametrize("bad_mode", [0o640, 0o604, 0o660])
def test_load_refuses_group_or_world_bits(path, bad_mode):
    secrets.ensure(path, environ={})
    path.chmod(bad_mode)
    with pytest.raises(CommandError):
        secrets.load(path, environ={})


def test_load_without_a_file_is_none(path):
    assert secrets.load(path, environ={}) is None


def test_fernet_key_is_valid_for_cryptography(path):
    sec, _ = secrets.ensure(path, environ={})
    f = Fernet(sec.fernet_key.encode())
    assert f.decrypt(f.encrypt(b"connection password")) == b"connection password"


def test_write_private_replaces_a_readable_file_with_a_private_one(tmp_path):
    target = tmp_path / "f"
    target.write_text("old")
    target.chmod(0o644)
    secrets.write_private(target, "new\n")
    assert target.read_text() == "new\n"
    assert mode(target) == 0o600


def test_env_names_are_prefixed_and_do_not_collide_with_settings():
    names = [Secrets.env_name(f) for f in FIELDS]
    assert all(n.startswith("APACHE_AIRFLOW_") for n in names)
    assert not set(names) & {s.env for s in settings.SETTINGS}


def test_env_file_round_trip(sec):
    text = secrets.render_env_file(sec)
    assert text.startswith("#")
    assert secrets.parse_env_file(text) == sec.as_env()


def test_parse_env_file_skips_comments_and_strips_quotes():
    text = "# comment\n\nNOEQUALS\n KEY1 = 'quoted' \nKEY2=\"dq\"\nKEY3=a=b\n"
    assert secrets.parse_env_file(text) == {"KEY1": "quoted", "KEY2": "dq", "KEY3": "a=b"}


def test_mask():
    assert secrets.mask("hunter2") == "********"
    assert secrets.mask("") == ""


@pytest.mark.parametrize("damage", [
    "APACHE_AIRFLOW_JWT_SECRET\n",                   # the '=' and the value lost
    "APACHE_AIRFLOW_JWT_SECRET=\n",                  # a secret with no value
    "\x00\x00\x00\x00\n",                            # a block of zeros after a crash
    "APACHE_AIRFLOW_JWT_\xff=x\n",                   # not text
])
def test_a_damaged_secrets_file_is_refused_naming_the_line_not_its_content(path, damage):
    secrets.ensure(path)
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = damage
    path.write_bytes("".join(lines).encode("utf-8", "surrogateescape").replace(b"\xc3\xbf", b"\xff"))
    before = path.read_bytes()
    with pytest.raises(CommandError) as exc:
        secrets.ensure(path)
    assert f"{path}:3 is damaged" in exc.value.message
    assert "backup restore" in exc.value.hint
    assert "JWT" not in exc.value.message  # the line itself may hold a secret
    assert path.read_bytes() == before  # no secret generated in its place


def test_an_older_home_gets_the_added_secrets_once(tmp_path, clean_environ):
    """A secrets.env written before the JWT key pair: the first command that loads it adds the new
    secrets and every later one gets the same (not a fresh key per command)."""
    from types import SimpleNamespace

    from airflow_resource.config.pinned_sets import HOME_RECORD

    home = tmp_path
    (home / HOME_RECORD).write_text("{}")
    old = {f.name: f"old-{f.name}-value" for f in dataclasses.fields(secrets.Secrets) if f.name not in secrets.ADDED}
    path = home / "secrets.env"
    secrets.write_private(path, "".join(f"{secrets.Secrets.env_name(k)}={v}\n" for k, v in old.items()))
    s = SimpleNamespace(home=home, secrets_file=path)
    first, second = secrets.require_installed(s), secrets.require_installed(s)
    assert first == second and first.fernet_key == "old-fernet_key-value"
    assert all(getattr(first, name) for name in secrets.ADDED)
    from airflow_resource.config import jwt_keys

    assert jwt_keys.private_pem(first.jwt_private_key).startswith("-----BEGIN PRIVATE KEY-----")
    restored = secrets.from_mapping({secrets.Secrets.env_name(k): v for k, v in old.items()})
    assert restored is not None and restored.jwt_private_key  # an older backup's secrets.env still restores
