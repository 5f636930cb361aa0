"""Behind a proxy at a sub-path, /auth answers only under the sub-path: clients must use it."""

from __future__ import annotations

import pytest

from airflow_resource.stack import credentials
from airflow_resource.config import secrets
from airflow_resource.config import settings

pytestmark = pytest.mark.unit


def _settings(tmp_path, base_url: str) -> settings.Settings:
    env = {"APACHE_AIRFLOW_BASE_URL": base_url} if base_url else {}
    return settings.resolve({"home": str(tmp_path), "api_port": 51234}, environ=env)


def test_api_base_carries_the_sub_path(tmp_path):
    s = _settings(tmp_path, "http://proxy.example/airflow/")
    assert s.api_url == "http://127.0.0.1:51234"
    assert s.api_base == "http://127.0.0.1:51234/airflow"


def test_without_base_url_api_base_is_the_api_url(tmp_path):
    s = _settings(tmp_path, "")
    assert s.api_base == s.api_url


def test_credentials_token_url_uses_the_sub_path(tmp_path):
    s = _settings(tmp_path, "http://proxy.example/airflow")
    api = credentials.connections(s, secrets.placeholder(), show=False)[0]
    assert api["connection"]["token_url"] == "http://127.0.0.1:51234/airflow/auth/token"
    assert api["connection"]["api_base"] == "http://127.0.0.1:51234/airflow/api/v2"
    assert api["connection"]["url"] == "http://proxy.example/airflow"
