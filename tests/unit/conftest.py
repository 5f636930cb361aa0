"""Fixtures of the unit suite: temp homes, fixed secrets, settings resolved without the real environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest

from airflow_resource.config import settings
from airflow_resource.config.secrets import Secrets


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def make_settings(home: Path) -> Callable[..., settings.Settings]:
    """Settings in a temp home from flags only: no os.environ, no config file unless one is written there."""

    def make(environ: dict[str, str] | None = None, **flags: Any) -> settings.Settings:
        flags.setdefault("home", str(home))
        return settings.resolve(flags, environ={} if environ is None else environ)

    return make


@pytest.fixture
def sec() -> Secrets:
    """Distinct, recognisable secrets (none of them a substring of another)."""
    return Secrets(
        fernet_key="Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE=",
        jwt_secret="jwt-Q7v1x9",
        api_secret_key="apikey-K3p8w2",
        admin_password="adminpw-M4n6b1",
        postgres_password="pgpw-R2t5y8",
        postgres_superuser_password="pgsuper-L9k3j7",
        redis_password="redispw-H6g4f2",
        flower_password="flowerpw-D8s1a5",
        jwt_private_key="MC4CAQAwBQYDK2VwBCIEICI6jNNVJneFNIqRzHPyQc9foRu28EFPIeU0pUAhe/c1",
        data_db_password="datapw-Z5c7v3",
        housekeeper_password="housepw-N2m8q4",
    )


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """For code that reads os.environ itself (the CLI): no APACHE_AIRFLOW_* leaks in from the caller."""
    for key in list(os.environ):
        if key.startswith(settings.ENV_PREFIX):
            monkeypatch.delenv(key)


@pytest.fixture(autouse=True)
def no_audit_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands the unit tests run record their actions (audit.record): never into a real database here."""
    from airflow_resource.audit import trail

    def refuse(*_: Any, **__: Any) -> None:
        raise ConnectionError("no database in the unit tests")

    monkeypatch.setattr(trail, "_insert", refuse)
