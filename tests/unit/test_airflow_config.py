"""airflow_config: the AIRFLOW__* environment every component shares, and the datastore URLs."""

from __future__ import annotations

import dataclasses
import json
from urllib.parse import unquote, urlsplit

import pytest

from airflow_resource.config import airflow_config
from airflow_resource.errors import CommandError

pytestmark = pytest.mark.unit

AWKWARD = "p@ss/w:rd%?#&"


def test_core_settings(make_settings, sec):
    s = make_settings()
    env = airflow_config.airflow_env(s, sec)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
    assert env["AIRFLOW__CORE__FERNET_KEY"] == sec.fernet_key
    assert env["AIRFLOW__API__SECRET_KEY"] == sec.api_secret_key
    assert env["AIRFLOW_HOME"] == str(s.home / "airflow")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(s.dags_dir)
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CELERY__FLOWER_BASIC_AUTH"] == f"admin:{sec.flower_password}"
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())


@pytest.mark.parametrize("host, port, url", [
    ("127.0.0.1", 48080, "http://127.0.0.1:48080/execution/"),
    ("127.0.0.1", 51234, "http://127.0.0.1:51234/execution/"),
    ("0.0.0.0", 51235, "http://127.0.0.1:51235/execution/"),
    ("192.168.1.5", 51236, "http://192.168.1.5:51236/execution/"),
])
def test_execution_api_url_follows_api_port(make_settings, sec, host, port, url):
    env = airflow_config.airflow_env(make_settings(api_host=host, api_port=port), sec)
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == url
    assert env["AIRFLOW__API__PORT"] == str(port)
    assert env["AIRFLOW__API__HOST"] == host


def test_jwt_is_the_key_pair_never_the_shared_secret(make_settings, sec):
    s = make_settings()
    env = airflow_config.airflow_env(s, sec)
    assert sec.jwt_secret not in env.values()
    assert sorted(k for k in env if "JW" in k) == [
        "AIRFLOW__API_AUTH__JWT_ALGORITHM", "AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME", "AIRFLOW__API_AUTH__JWT_KID", "AIRFLOW__API_AUTH__JWT_PRIVATE_KEY_PATH",
        "AIRFLOW__API_AUTH__TRUSTED_JWKS_URL"]
    assert env["AIRFLOW__API_AUTH__JWT_PRIVATE_KEY_PATH"].startswith("-----BEGIN PRIVATE KEY-----")
    assert env["APACHE_AIRFLOW_MEMFD_VARS"] == "AIRFLOW__API_AUTH__JWT_PRIVATE_KEY_PATH"
    assert env["AIRFLOW__API_AUTH__TRUSTED_JWKS_URL"] == str(s.run_dir / "jwks.json")
    shared = airflow_config.shared_env(s, sec)
    assert "AIRFLOW__API_AUTH__JWT_PRIVATE_KEY_PATH" not in shared and "AIRFLOW__API_AUTH__JWT_KID" in shared


def test_jwks_kid_is_airflows_own_thumbprint(sec):
    from airflow.api_fastapi.auth.tokens import _pem_to_key, key_to_jwk_dict
    from airflow_resource.config import jwt_keys

    key = _pem_to_key(jwt_keys.private_pem(sec.jwt_private_key))
    jwk = json.loads(jwt_keys.jwks(sec.jwt_private_key))["keys"][0]
    assert jwk == {**key_to_jwk_dict(key), "alg": "EdDSA", "use": "sig"}
    assert "d" not in jwk  # public only


def test_shared_env_holds_no_generated_secret(make_settings, sec):
    shared = airflow_config.shared_env(make_settings(), sec)
    blob = json.dumps(shared)
    for f in dataclasses.fields(sec):
        assert getattr(sec, f.name) not in blob, f.name
    assert airflow_config.without_secrets(airflow_config.airflow_env(make_settings(), sec)) == \
        {**shared, **airflow_config.tuning(make_settings())}


def test_ports_follow_settings(make_settings, sec):
    s = make_settings(flower_port=51555, scheduler_health_port=51974, log_server_port=51793, worker_concurrency=7)
    env = airflow_config.airflow_env(s, sec)
    assert env["AIRFLOW__CELERY__FLOWER_PORT"] == "51555"
    assert env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT"] == "51974"
    assert env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "True"
    assert env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] == "51793"
    assert env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == "51794"
    assert env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == "7"


def test_embedded_urls(make_settings, sec):
    s = make_settings(postgres_port=51432, redis_port=51379)
    env = airflow_config.airflow_env(s, sec)
    pw = sec.postgres_password
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"postgresql+psycopg2://airflow:{pw}@127.0.0.1:51432/airflow"
    # Celery's results on Redis (another db), not on the metadata database's owner role
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == f"redis://:{sec.redis_password}@127.0.0.1:51379/1"
    assert not any(k.startswith("AIRFLOW_CONN_") for k in env)  # resource_postgres lives in the metadata DB
    assert airflow_config.data_url(s, sec) == \
        f"postgresql://resource_data:{sec.data_db_password}@127.0.0.1:51432/resource_data"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == f"redis://:{sec.redis_password}@127.0.0.1:51379/0"


def test_broker_url_quotes_the_password(make_settings, sec):
    odd = dataclasses.replace(sec, redis_password=AWKWARD)
    s = make_settings(redis_port=51379)
    url = airflow_config.airflow_env(s, odd)["AIRFLOW__CELERY__BROKER_URL"]
    assert url == "redis://:p%40ss%2Fw%3Ard%25%3F%23%26@127.0.0.1:51379/0"
    parts = urlsplit(url)
    assert (parts.hostname, parts.port, parts.path) == ("127.0.0.1", 51379, "/0")
    assert unquote(parts.password) == AWKWARD
    assert airflow_config.redis_url(s, odd, db=3).endswith("@127.0.0.1:51379/3")


def test_database_url_quotes_the_password(make_settings, sec):
    odd = dataclasses.replace(sec, postgres_password=AWKWARD)
    url = airflow_config.postgres_url(make_settings(postgres_port=51432), odd)
    parts = urlsplit(url)
    assert parts.scheme == "postgresql+psycopg2"
    assert (parts.username, parts.hostname, parts.port, parts.path) == ("airflow", "127.0.0.1", 51432, "/airflow")
    assert unquote(parts.password) == AWKWARD


def test_external_urls_are_used_as_given(make_settings, sec):
    pg = "postgresql://meta:s3cret@db.example:6543/meta?sslmode=require"
    redis = "rediss://:r3dis@cache.example:6380/2"
    env = airflow_config.airflow_env(make_settings(postgres_url=pg, redis_url=redis), sec)
    assert env["AIRFLOW__CELERY__BROKER_URL"] == redis
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == \
        "postgresql+psycopg2://meta:s3cret@db.example:6543/meta?sslmode=require"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == redis
    assert airflow_config.data_url(make_settings(postgres_url=pg, redis_url=redis), sec) == pg
    # no embedded secret leaks into an external URL
    assert sec.postgres_password not in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert sec.redis_password not in env["AIRFLOW__CELERY__BROKER_URL"]


def test_external_postgres_scheme_is_normalised(make_settings, sec):
    s = make_settings(postgres_url="postgres://u:p@db:5432/x")
    assert airflow_config.postgres_url(s, sec) == "postgresql+psycopg2://u:p@db:5432/x"
    assert airflow_config.postgres_url(s, sec, driver="postgresql") == "postgresql://u:p@db:5432/x"


def test_base_url_only_when_set(make_settings, sec):
    assert "AIRFLOW__API__BASE_URL" not in airflow_config.airflow_env(make_settings(), sec)
    env = airflow_config.airflow_env(make_settings(base_url="https://proxy.example/airflow"), sec)
    assert env["AIRFLOW__API__BASE_URL"] == "https://proxy.example/airflow"


def test_child_path_starts_with_the_venv(make_settings):
    s = make_settings()
    assert airflow_config.child_path(s).split(":")[0] == str(s.venv / "bin")


def test_user_options_override_tuning_and_add_keys(make_settings, sec):
    s = make_settings(environ={"AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                               "AIRFLOW__CORE__PARALLELISM": "64"})
    env = airflow_config.airflow_env(s, sec)
    assert env["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] == "0.5"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "64"
    assert airflow_config.airflow_env(make_settings(), sec)["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] == \
        airflow_config.tuning(s)["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"]


@pytest.mark.parametrize("key", ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__API__PORT", "AIRFLOW__CORE__FERNET_KEY"])
def test_options_the_stack_depends_on_are_refused(make_settings, sec, key):
    with pytest.raises(CommandError, match=key):
        airflow_config.airflow_env(make_settings(environ={key: "x"}), sec)


def test_api_server_runs_under_gunicorn_only_when_the_venv_has_it(make_settings, tmp_path):
    s = make_settings(venv=str(tmp_path / "venv"))
    assert airflow_config.tuning(s)["AIRFLOW__API__SERVER_TYPE"] == "uvicorn"  # Airflow's own server
    pkg = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "gunicorn"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    assert airflow_config.tuning(s)["AIRFLOW__API__SERVER_TYPE"] == "gunicorn"
