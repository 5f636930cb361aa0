"""settings.resolve: precedence, validation, derived defaults; schema.json/defaults.sh cannot drift."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from airflow_resource.config import generated, settings
from airflow_resource.errors import CommandError

pytestmark = pytest.mark.unit

from airflow_resource.paths import REPO_ROOT as REPO  # noqa: E402


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------- precedence


def test_default_when_nothing_is_set(make_settings):
    s = make_settings()
    assert s.api_port == 48080
    assert s.postgres_port == 45432
    assert s.workers == 1
    assert s.api_host == "127.0.0.1"
    assert s.sources["api_port"] == "default"


def test_config_file_beats_default(home, make_settings):
    write_toml(home / "resource.toml", "api_port = 50001\nadmin_user = 'boss'\n")
    s = make_settings()
    assert s.api_port == 50001
    assert s.admin_user == "boss"
    assert s.sources["api_port"] == "config file"
    assert s.flower_port == 45555  # untouched settings keep their default


def test_environment_beats_config_file(home, make_settings):
    write_toml(home / "resource.toml", "api_port = 50001\n")
    s = make_settings(environ={"APACHE_AIRFLOW_API_PORT": "50002"})
    assert s.api_port == 50002
    assert s.sources["api_port"] == "environment APACHE_AIRFLOW_API_PORT"


def test_flag_beats_environment_and_config_file(home, make_settings):
    write_toml(home / "resource.toml", "api_port = 50001\n")
    s = make_settings(environ={"APACHE_AIRFLOW_API_PORT": "50002"}, api_port="50003")
    assert s.api_port == 50003
    assert s.sources["api_port"] == "flag"


def test_none_flag_is_ignored(make_settings):
    s = make_settings(environ={"APACHE_AIRFLOW_API_PORT": "50002"}, api_port=None)
    assert s.api_port == 50002


def test_each_layer_applies_per_setting(home, make_settings):
    write_toml(home / "resource.toml", "api_port = 50001\nredis_port = 50011\nflower_port = 50021\n")
    s = make_settings(environ={"APACHE_AIRFLOW_REDIS_PORT": "50012", "APACHE_AIRFLOW_FLOWER_PORT": "50022"},
                      flower_port=50023)
    assert (s.api_port, s.redis_port, s.flower_port, s.postgres_port) == (50001, 50012, 50023, 45432)
    assert s.sources["postgres_port"] == "default"
    assert s.sources["api_port"] == "config file"
    assert s.sources["redis_port"] == "environment APACHE_AIRFLOW_REDIS_PORT"
    assert s.sources["flower_port"] == "flag"


def test_home_from_environment_and_flag(tmp_path):
    env_home, flag_home = tmp_path / "env-home", tmp_path / "flag-home"
    s = settings.resolve({}, environ={"APACHE_AIRFLOW_HOME": str(env_home)})
    assert s.home == env_home
    assert s.sources["home"] == "environment APACHE_AIRFLOW_HOME"
    s = settings.resolve({"home": str(flag_home)}, environ={"APACHE_AIRFLOW_HOME": str(env_home)})
    assert s.home == flag_home
    assert s.sources["home"] == "flag"


def test_config_file_is_read_from_the_resolved_home(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    write_toml(a / "resource.toml", "api_port = 50101\n")
    write_toml(b / "resource.toml", "api_port = 50102\n")
    assert settings.resolve({"home": str(a)}, environ={}).api_port == 50101
    assert settings.resolve({}, environ={"APACHE_AIRFLOW_HOME": str(b)}).api_port == 50102


def test_config_file_from_apache_airflow_config(home, tmp_path, make_settings):
    write_toml(home / "resource.toml", "api_port = 50001\n")
    other = write_toml(tmp_path / "elsewhere.toml", "api_port = 50201\n")
    s = make_settings(environ={"APACHE_AIRFLOW_CONFIG": str(other)})
    assert s.api_port == 50201


def test_missing_config_file_is_not_an_error(tmp_path, make_settings):
    s = make_settings(environ={"APACHE_AIRFLOW_CONFIG": str(tmp_path / "absent.toml")})
    assert s.api_port == 48080


def test_read_file_hook_gets_the_config_path(home):
    seen: list[Path] = []

    def fake_read(path: Path) -> dict:
        seen.append(path)
        return {"workers": 3}

    s = settings.resolve({"home": str(home)}, environ={}, read_file=fake_read)
    assert seen == [home / "resource.toml"]
    assert s.workers == 3


# ---------------------------------------------------------------- errors


def test_broken_toml_names_the_file(home, make_settings):
    path = write_toml(home / "resource.toml", "api_port = = 1\n[unclosed\n")
    with pytest.raises(CommandError) as exc:
        make_settings()
    assert str(path) in exc.value.message
    assert "TOML" in exc.value.message
    assert str(path) in exc.value.hint


def test_non_utf8_config_file_is_a_command_error(home, make_settings):
    (home / "resource.toml").write_bytes(b"api_host = '\xff\xfe'\n")
    with pytest.raises(CommandError) as exc:
        make_settings()
    assert "resource.toml" in exc.value.message


def test_unknown_key_names_the_key_and_file(home, make_settings):
    path = write_toml(home / "resource.toml", "api_port = 50001\napi_prot = 50002\n")
    with pytest.raises(CommandError) as exc:
        make_settings()
    assert "api_prot" in exc.value.message
    assert str(path) in exc.value.message
    assert "api_port" in exc.value.hint  # the hint lists the known settings


@pytest.mark.parametrize("environ, flags, origin", [
    ({"APACHE_AIRFLOW_API_PORT": "http"}, {}, "environment APACHE_AIRFLOW_API_PORT"),
    ({}, {"api_port": "eighty"}, "flag"),
    ({"APACHE_AIRFLOW_API_PORT": "8080.0"}, {}, "environment APACHE_AIRFLOW_API_PORT"),
])
def test_non_integer_port_is_refused(make_settings, environ, flags, origin):
    with pytest.raises(CommandError) as exc:
        make_settings(environ=environ, **flags)
    assert "api_port" in exc.value.message
    assert origin in exc.value.message
    assert "int" in exc.value.message


@pytest.mark.parametrize("value", ["'8080x'", "true", "[8080]"])
def test_non_integer_port_in_config_file_is_refused(home, make_settings, value):
    path = write_toml(home / "resource.toml", f"redis_port = {value}\n")
    with pytest.raises(CommandError) as exc:
        make_settings()
    assert "redis_port" in exc.value.message
    assert str(path) in exc.value.message


@pytest.mark.parametrize("value", ["8080.7", "8080.0"])
def test_float_port_in_config_file_is_refused(home, make_settings, value):
    """Fixed: a TOML float is refused, not truncated by int()."""
    path = write_toml(home / "resource.toml", f"api_port = {value}\n")
    with pytest.raises(CommandError) as exc:
        make_settings()
    assert "api_port" in exc.value.message
    assert str(path) in exc.value.message


@pytest.mark.parametrize("name, value", [
    ("api_port", "0"), ("api_port", "65536"), ("postgres_port", "-1"), ("log_server_port", "70000"),
    ("workers", "65"), ("workers", "-1"), ("worker_concurrency", "0"), ("worker_concurrency", "257"),
])
def test_out_of_range_is_refused(make_settings, name, value):
    env = settings.BY_NAME[name].env
    with pytest.raises(CommandError) as exc:
        make_settings(environ={env: value})
    assert name in exc.value.message
    assert f"is {int(value)}" in exc.value.message
    s = settings.BY_NAME[name]
    assert f"{s.minimum}..{s.maximum}" in exc.value.message


@pytest.mark.parametrize("name, value", [("api_port", 1), ("api_port", 65535), ("workers", 0), ("workers", 64)])
def test_range_bounds_are_inclusive(make_settings, name, value):
    assert getattr(make_settings(**{name: str(value)}), name) == value


def test_out_of_range_in_config_file_names_the_file(home, make_settings):
    path = write_toml(home / "resource.toml", "flower_port = 99999\n")
    with pytest.raises(CommandError) as exc:
        make_settings()
    assert "flower_port" in exc.value.message
    assert str(path) in exc.value.message


def test_home_in_config_file_is_refused(home, make_settings):
    path = write_toml(home / "resource.toml", f"home = '{home / 'other'}'\n")
    with pytest.raises(CommandError) as exc:
        make_settings()
    assert "home" in exc.value.message
    assert str(path) in exc.value.message
    assert "APACHE_AIRFLOW_HOME" in exc.value.hint


def test_empty_home_env_is_not_the_current_directory(tmp_path, monkeypatch):
    """Fixed: APACHE_AIRFLOW_HOME='' counts as unset, as scripts/venv.sh's ${APACHE_AIRFLOW_HOME:-...} does."""
    monkeypatch.chdir(tmp_path)
    no_file = lambda _path: {}  # noqa: E731 - never read a real home's config
    default = settings.resolve({}, environ={}, read_file=no_file)
    s = settings.resolve({}, environ={"APACHE_AIRFLOW_HOME": ""}, read_file=no_file)
    assert s.home == default.home != tmp_path
    assert s.sources["home"] == "default"


@pytest.mark.parametrize("name", ["api_port", "workers", "admin_user", "api_host", "venv", "dags_dir"])
def test_empty_env_value_counts_as_unset(make_settings, name):
    """Any APACHE_AIRFLOW_*='' is unset (${VAR:-default}): the default applies, not '' nor a refusal."""
    default = make_settings()
    s = make_settings(environ={settings.BY_NAME[name].env: ""})
    assert getattr(s, name) == getattr(default, name)
    assert s.sources[name] == "default"


def test_empty_env_value_falls_through_to_config_file(home, make_settings):
    write_toml(home / "resource.toml", "api_port = 50001\nadmin_user = 'boss'\n")
    s = make_settings(environ={"APACHE_AIRFLOW_API_PORT": "", "APACHE_AIRFLOW_ADMIN_USER": ""})
    assert (s.api_port, s.admin_user) == (50001, "boss")
    assert s.sources["api_port"] == s.sources["admin_user"] == "config file"


def test_empty_config_env_means_the_config_file_in_home(home, make_settings):
    write_toml(home / "resource.toml", "api_port = 50001\n")
    assert make_settings(environ={"APACHE_AIRFLOW_CONFIG": ""}).api_port == 50001


# ---------------------------------------------------------------- derived values


def test_venv_and_dags_dir_follow_home(tmp_path):
    h = tmp_path / "h1"
    s = settings.resolve({"home": str(h)}, environ={})
    assert s.venv == h / "venv"
    assert s.dags_dir == h / "dags"
    assert s.sources["venv"] == "default"
    assert s.airflow_home == h / "airflow"
    assert s.secrets_file == h / "secrets.env"
    assert s.supervisord_socket == h / "run" / "supervisord.sock"
    assert s.component_logs_dir == h / "logs" / "components"


def test_explicit_venv_and_dags_dir_win(make_settings, tmp_path):
    s = make_settings(environ={"APACHE_AIRFLOW_VENV": str(tmp_path / "v")}, dags_dir=str(tmp_path / "d"))
    assert s.venv == tmp_path / "v"
    assert s.dags_dir == tmp_path / "d"


def test_home_is_absolute_and_user_expanded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = settings.resolve({"home": "rel/home"}, environ={})
    assert s.home == tmp_path / "rel" / "home"
    assert s.venv == tmp_path / "rel" / "home" / "venv"
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    s = settings.resolve({"home": "~/af"}, environ={})
    assert s.home == tmp_path / "user" / "af"


def test_default_worker_concurrency_is_at_least_four(make_settings):
    s = make_settings()
    assert isinstance(s.worker_concurrency, int)
    assert s.worker_concurrency >= 4


def test_embedded_flags_follow_urls(make_settings):
    s = make_settings()
    assert s.embedded_postgres and s.embedded_redis
    s = make_settings(postgres_url="postgresql://u:p@db/x", redis_url="redis://r:6379/0")
    assert not s.embedded_postgres and not s.embedded_redis


@pytest.mark.parametrize("host, url", [
    ("127.0.0.1", "http://127.0.0.1:51000"),
    ("0.0.0.0", "http://127.0.0.1:51000"),
    ("::", "http://127.0.0.1:51000"),
    ("10.1.2.3", "http://10.1.2.3:51000"),
])
def test_api_url(make_settings, host, url):
    assert make_settings(api_host=host, api_port=51000).api_url == url


def test_api_url_brackets_ipv6_host(make_settings):
    assert make_settings(api_host="::1", api_port=51000).api_url == "http://[::1]:51000"


def test_to_json_round_trips(make_settings):
    s = make_settings(api_port=51000, postgres_url="postgresql://x")
    data = json.loads(json.dumps(s.to_json()))
    assert "sources" not in data
    assert data["home"] == str(s.home)
    back = settings.Settings(**{**data, **{k: Path(data[k]) for k in ("home", "venv", "dags_dir")}})
    assert back == s


def test_for_running_stack_uses_effective_ports(home, clean_environ):
    (home / "run").mkdir()
    current = settings.resolve({"home": str(home)})
    effective = {**current.to_json(), "api_port": 51234, "flower_port": 51235}
    (home / settings.EFFECTIVE_FILE).write_text(json.dumps(effective))
    s = settings.for_running_stack({"home": str(home), "api_port": 40000})
    assert s.api_port == 51234
    assert s.flower_port == 51235
    assert s.home == home
    assert s.sources["api_port"] == "running stack"


def test_for_running_stack_without_effective_file(home, clean_environ):
    s = settings.for_running_stack({"home": str(home), "api_port": "40000"})
    assert s.api_port == 40000


# ---------------------------------------------------------------- the table is the single source


def test_every_setting_has_a_prefixed_env_var():
    assert len(settings.SETTINGS) == len(settings.BY_NAME)
    for s in settings.SETTINGS:
        assert s.env == "APACHE_AIRFLOW_" + s.name.upper()
        assert re.fullmatch(r"APACHE_AIRFLOW_[A-Z0-9_]+", s.env)


def test_settings_table_matches_the_dataclass():
    fields = [f.name for f in dataclasses.fields(settings.Settings) if f.name not in ("sources", "airflow_options", "configured_venv")]
    assert fields == [s.name for s in settings.SETTINGS]


def test_airflow_tables_become_airflow_options(home, clean_environ):
    (home / "resource.toml").write_text(
        "api_port = 51000\n[airflow.scheduler]\nscheduler_idle_sleep_time = 0.5\n"
        "[airflow.core]\nparallelism = 64\nload_examples = false\n")
    s = settings.resolve({"home": str(home)}, environ={"AIRFLOW__CORE__PARALLELISM": "48", "AIRFLOW__X": "not an option"})
    assert s.airflow_options == {
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        "AIRFLOW__CORE__PARALLELISM": "48",  # the environment wins over the file
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
    }


@pytest.mark.parametrize("text", ["airflow = 3\n", "[airflow]\nscheduler = 1\n", "[airflow.core]\nx = [1]\n"])
def test_airflow_table_of_the_wrong_shape_is_refused(home, clean_environ, text):
    (home / "resource.toml").write_text(text)
    with pytest.raises(CommandError, match="must be"):
        settings.resolve({"home": str(home)}, environ={})


def test_airflow_options_survive_the_effective_file(home, clean_environ):
    (home / "run").mkdir()
    current = settings.resolve({"home": str(home)}, environ={"AIRFLOW__CORE__PARALLELISM": "7"})
    (home / settings.EFFECTIVE_FILE).write_text(json.dumps(current.to_json()))
    assert settings.for_running_stack({"home": str(home)}).airflow_options == {"AIRFLOW__CORE__PARALLELISM": "7"}


def test_schema_json_in_repo_is_generated():
    on_disk = json.loads((REPO / "config" / "schema.json").read_text())
    assert on_disk == generated.json_schema()


def test_schema_lists_every_setting_with_its_env():
    props = generated.json_schema()["properties"]
    assert list(props) == [s.name for s in settings.SETTINGS] + [settings.AIRFLOW_TABLE]
    assert props["api_port"] == {"type": "integer", "description": settings.BY_NAME["api_port"].description,
                                 "x-env": "APACHE_AIRFLOW_API_PORT", "default": 48080,
                                 "minimum": 1, "maximum": 65535}
    assert "default" not in props["home"]  # derived defaults have none
    assert all(props[s.name]["x-env"].startswith("APACHE_AIRFLOW_") for s in settings.SETTINGS)


def test_defaults_sh_in_repo_is_generated():
    assert (REPO / "config" / "defaults.sh").read_text() == generated.defaults_sh()


def test_defaults_sh_exports_every_fixed_default():
    text = generated.defaults_sh()
    for s in settings.SETTINGS:
        line = f'export {s.env}="${{{s.env}:-{s.default}}}"'
        if callable(s.default):
            assert s.env not in text
        else:
            assert line in text.splitlines()


# ---------------------------------------------------------------- damaged files name the line

def test_wrong_type_in_config_file_names_the_line(home, make_settings):
    path = write_toml(home / "resource.toml", "# ports\napi_port = 50001\nworkers = 'two'\n")
    with pytest.raises(CommandError) as exc:
        make_settings()
    assert f"config file {path}:3" in exc.value.message and "workers" in exc.value.message


def test_unknown_key_names_its_line(home, make_settings):
    path = write_toml(home / "resource.toml", "api_port = 50001\n\napi_prot = 50002\n")
    with pytest.raises(CommandError) as exc:
        make_settings()
    assert f"{path}:3" in exc.value.message


def test_where_ignores_keys_inside_tables(home):
    path = write_toml(home / "resource.toml", "[airflow.core]\nworkers = 3\n")
    assert settings.where(path, "workers") == str(path)


@pytest.mark.parametrize("text, where", [
    ('{"api_port": 48080,\n "workers": ', ":2"),   # cut short (a full disk, a crash)
    ("[1, 2]", ""),                                  # not an object
    ('{"api_port": "http"}', ""),                    # a wrong type
])
def test_damaged_effective_file_is_refused_unless_stopping(home, clean_environ, text, where):
    (home / "run").mkdir()
    path = home / settings.EFFECTIVE_FILE
    path.write_text(text)
    with pytest.raises(CommandError) as exc:
        settings.for_running_stack({"home": str(home)})
    assert str(path) + where in exc.value.message
    assert "manage stop" in exc.value.hint
    assert path.read_text() == text
    assert settings.for_running_stack({"home": str(home)}, damaged_ok=True).api_port == 48080
