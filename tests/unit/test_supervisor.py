"""supervisor.render / component_env and their quoting, checked with supervisord's own config parser.

supervisord.conf holds no environment any more: each program runs `<venv>/bin/python <home>/run/launch.py --
<argv>` with only APACHE_AIRFLOW_ENV_FILE and APACHE_AIRFLOW_COMPONENT in environment=; the component's whole
environment (secrets included) is component_env(...), written as JSON to run/env/<name>.json (see test_launch.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import re
import shlex
import stat
from pathlib import Path

import pytest
from supervisor.options import ServerOptions

from airflow_resource.config import airflow_config
from airflow_resource.stack import components
from airflow_resource.standalone import launch
from airflow_resource.stack import supervisor
from airflow_resource.errors import CommandError
from airflow_resource.standalone.launch import ENV_FILE_ENV, HOME_ENV, TAG_ENV
from airflow_resource.config.settings import Settings

pytestmark = pytest.mark.unit

BASE_ENV = {"PATH": "/venv/bin:/usr/bin", "LANG": "C.UTF-8", HOME_ENV: "/h"}
PG_BIN = "/usr/lib/postgresql/15/bin"
REDIS = "/usr/bin/redis-server"

# Values supervisord's environment= could not carry (quotes, comment markers, newlines...): they now travel
# in the component's JSON env file, so they must arrive there unchanged.
AWKWARD = [
    'say "hi" now',              # double quote
    'say "hi"',                  # ends in a quote (supervisord strips those)
    "it's",                      # single quote
    "it's \"both\"",             # both kinds
    "a,b=c%d 100%",              # comma, equals and percent signs
    "%(ENV_HOME)s",              # looks like a supervisord expansion
    "",                          # empty
    "  padded  ",
    "back\\slash\ttab",
    "p@ss:w/rd?x&y#z",
    "pass ;word",                # ini inline comment markers
    "pass #word",
    "two\nlines",
    "unicode é ü €",
]


def prepare(s: Settings) -> None:
    """Directories supervisord's parser checks for (socket, logs)."""
    for d in (s.run_dir, s.logs_dir, s.component_logs_dir):
        d.mkdir(parents=True, exist_ok=True)


def load(path: Path) -> ServerOptions:
    opts = ServerOptions()
    opts.configfile = str(path)
    opts.process_config(do_usage=False)  # raises ValueError on a config supervisord would refuse
    return opts


def parse(s: Settings, text: str) -> dict:
    """Parse the rendered text with supervisord's ServerOptions; {program name: ProcessConfig}."""
    prepare(s)
    path = s.home / "supervisord.conf"
    path.write_text(text)
    opts = load(path)
    out = {}
    for group in opts.process_group_configs:
        assert len(group.process_configs) == 1
        out[group.name] = group.process_configs[0]
    out[""] = opts.configroot.supervisord  # the [supervisord] section, under a name no program can have
    return out


def programs(text: str) -> dict[str, list[str]]:
    """[program:x] sections of the text: {x: [lines]}."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        m = re.fullmatch(r"\[program:(.+)\]", line)
        if m:
            current = out.setdefault(m.group(1), [])
        elif line.startswith("["):
            current = None
        elif current is not None and line:
            current.append(line)
    return out


def launcher_argv(s: Settings, c: components.Component) -> list[str]:
    return [str(s.venv / "bin" / "python"), str(s.run_dir / "launch.py"), "--", *c.argv]


def build(s: Settings, sec) -> list[components.Component]:
    return components.build(s, sec, PG_BIN, REDIS)


@pytest.fixture
def s(make_settings) -> Settings:
    return make_settings(workers=2)


@pytest.fixture
def comps(s, sec):
    return build(s, sec)


@pytest.fixture
def by(comps):
    return components.by_name(comps)


@pytest.fixture
def aenv(s, sec):
    return airflow_config.airflow_env(s, sec)


# ---------------------------------------------------------------- quoting


@pytest.mark.parametrize("value, quoted", [
    ("plain", '"plain"'),
    ("", '""'),
    ("a,b", '"a,b"'),
    ("/home/my home/run/env/api-server.json", '"/home/my home/run/env/api-server.json"'),
    ("50%", '"50%%"'),
    ("%(ENV_HOME)s", '"%%(ENV_HOME)s"'),
])
def test_quote_env_value(value, quoted):
    assert supervisor.quote_env_value(value) == quoted


@pytest.mark.parametrize("value", [
    "it's", 'say "hi" now', 'say "hi"', "'", '"', "it's \"both\"", "two\nlines", "\n",
    "pass ;word", "pass #word", " ;", " #", "a;b", "a#b", "pass\t;word", "carriage\rreturn", "nul\0", "tab\there",
])
def test_quote_env_value_refuses_non_plain_values(value):
    with pytest.raises(ValueError, match="not a plain value"):
        supervisor.quote_env_value(value)


def env_through_supervisord(tmp_path: Path, value: str) -> dict[str, str]:
    """environment=V=<quote_env_value(value)> parsed by supervisord: the program's environment."""
    path = tmp_path / "env.conf"
    path.write_text(
        f"[supervisord]\nlogfile={tmp_path}/supervisord.log\npidfile={tmp_path}/supervisord.pid\n"
        f"[program:x]\ncommand=/bin/true\nenvironment=V={supervisor.quote_env_value(value)},W=\"w\"\n"
    )
    return load(path).process_group_configs[0].process_configs[0].environment


@pytest.mark.parametrize("value", [
    "plain", "", "a,b", "a=b", "50%", "a,b=c%d 100%", "%(ENV_HOME)s", "%(here)s", "  padded  ",
    "back\\slash", "trailing\\", "p@ss:w/rd?x&y", "$HOME", "unicode é ü €", "/home/my home/run/env/x.json",
])
def test_plain_values_survive_supervisord(tmp_path, value):
    assert env_through_supervisord(tmp_path, value) == {"V": value, "W": "w"}


@pytest.mark.parametrize("arg, quoted", [
    ("/usr/bin/airflow", "/usr/bin/airflow"),
    ("worker-1@host", "worker-1@host"),
    ("with space", '"with space"'),
    ("tab\there", '"tab\there"'),
    ('dq"x', '"dq\\"x"'),
    ("back\\slash", '"back\\\\slash"'),
    ("100%", "100%%"),
])
def test_quote_arg(arg, quoted):
    assert supervisor.quote_arg(arg) == quoted


def test_quote_arg_round_trips_through_shlex():
    args = ["/opt/my venv/bin/airflow", "it's", 'a "b"', "c\\d", "plain", "50% done", "x'y\"z"]
    line = " ".join(supervisor.quote_arg(a) for a in args).replace("%%", "%")  # supervisord expands %% first
    assert shlex.split(line) == args


# ---------------------------------------------------------------- component_env: what goes into run/env/<name>.json


def test_component_env_layers_base_airflow_component_and_tag(comps, aenv):
    for c in comps:
        expected = dict(BASE_ENV)
        if c.airflow:
            expected.update(airflow_config.for_component(aenv, c.secrets))
        expected.update(c.env)
        expected[TAG_ENV] = c.name
        assert supervisor.component_env(c, BASE_ENV, aenv) == expected, c.name


def test_datastores_do_not_get_airflow_secrets(by, aenv, sec):
    for name in ("postgres", "redis"):
        env = supervisor.component_env(by[name], BASE_ENV, aenv)
        assert not any(k.startswith("AIRFLOW") for k in env), name
        assert not set(env.values()) & set(dataclasses.asdict(sec).values()), name
    api = supervisor.component_env(by["api-server"], BASE_ENV, aenv)
    assert api["AIRFLOW__CORE__FERNET_KEY"] == sec.fernet_key
    assert api["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_each_worker_serves_task_logs_on_its_own_port(s, by, aenv):
    # the component's own env wins over the shared Airflow env (which says log_server_port + 1)
    assert aenv["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == str(s.log_server_port + 1)
    for i in (1, 2):
        env = supervisor.component_env(by[f"worker-{i}"], BASE_ENV, aenv)
        assert env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == str(s.log_server_port + i)


def test_component_tag_wins_and_inputs_are_not_changed(by, aenv):
    base = {**BASE_ENV, TAG_ENV: "from-the-caller"}
    base_copy, aenv_copy = dict(base), dict(aenv)
    env = supervisor.component_env(by["scheduler"], base, aenv)
    assert env[TAG_ENV] == "scheduler"
    assert env[HOME_ENV] == BASE_ENV[HOME_ENV]
    assert (base, aenv) == (base_copy, aenv_copy)


@pytest.mark.parametrize("value", AWKWARD)
def test_awkward_values_reach_the_env_file_unchanged(by, aenv, value):
    base = {**BASE_ENV, "TRICKY": value}
    for name in ("api-server", "postgres"):
        env = supervisor.component_env(by[name], base, aenv)
        assert json.loads(json.dumps(env, indent=1)) == env
        assert env["TRICKY"] == value


def test_awkward_secrets_reach_the_env_file_unchanged(s, by, sec):
    odd = dataclasses.replace(sec, flower_password='fl"ow,er% ;x', admin_password="ad'min", jwt_secret="j #w\nt")
    aenv = airflow_config.airflow_env(s, odd)
    flower = json.loads(json.dumps(supervisor.component_env(by["flower"], BASE_ENV, aenv)))
    assert flower["AIRFLOW__CELERY__FLOWER_BASIC_AUTH"] == f"{s.admin_user}:{odd.flower_password}"
    api = json.loads(json.dumps(supervisor.component_env(by["api-server"], BASE_ENV, aenv)))
    assert api["AIRFLOW__API_AUTH__JWT_PRIVATE_KEY_PATH"] == aenv["AIRFLOW__API_AUTH__JWT_PRIVATE_KEY_PATH"]


# Who holds which secret (docs/architecture.md "Secrets by component"): Airflow's security model's table,
# narrowed where this stack needs less (no Fernet key and no API secret key on workers).
HOLDERS = {
    "fernet_key": {"api-server", "scheduler", "dag-processor", "triggerer"},
    "api_secret_key": {"api-server"},
    "jwt_private_key": {"api-server", "scheduler"},
    "postgres_password": {"api-server", "scheduler", "dag-processor", "triggerer"},
    # the api-server: its login limit's counters (Redis database 2), shared by its workers
    "redis_password": {"api-server", "scheduler", "worker-1", "worker-2", "flower", "metrics"},
    "flower_password": {"flower"},
    "housekeeper_password": {"housekeeper"},
}


def test_each_secret_reaches_only_the_components_that_need_it(s, comps, sec):
    from airflow_resource.config import jwt_keys

    aenv = airflow_config.airflow_env(s, sec)
    envs = {c.name: json.dumps(supervisor.component_env(c, BASE_ENV, aenv)) for c in comps if c.name != "backup"}
    pem_body = jwt_keys.private_pem(sec.jwt_private_key).splitlines()[1]
    for name in dataclasses.asdict(sec):
        needle = pem_body if name == "jwt_private_key" else getattr(sec, name)
        holders = {c for c, text in envs.items() if needle in text}
        assert holders == HOLDERS.get(name, set()), name
    worker = json.loads(envs["worker-1"])
    assert worker["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == airflow_config.NO_METADATA_DB
    assert worker["AIRFLOW__API_AUTH__TRUSTED_JWKS_URL"] == str(airflow_config.jwks_file(s))
    assert "AIRFLOW__API_AUTH__JWT_PRIVATE_KEY_PATH" not in worker and "APACHE_AIRFLOW_MEMFD_VARS" not in worker


def test_env_file_and_launcher_live_in_the_run_dir(s):
    assert supervisor.env_file(s, "worker-2") == s.run_dir / "env" / "worker-2.json"
    assert supervisor.launcher_path(s) == s.run_dir / "launch.py"


def test_write_launcher_copies_launch_py(s):
    s.run_dir.mkdir(parents=True)
    supervisor.write_launcher(s)
    path = supervisor.launcher_path(s)
    assert path.read_text() == Path(launch.__file__).read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# ---------------------------------------------------------------- render: text


def test_one_program_per_component(s, comps):
    text = supervisor.render(s, comps, None)
    assert list(programs(text)) == [c.name for c in comps]
    assert text.count("[program:") == len(comps)
    assert "[unix_http_server]" in text and f"file={s.supervisord_socket}" in text
    assert f"serverurl=unix://{s.supervisord_socket}" in text


USERS = {"service": "airflow", "data": "airflow-data"}


def test_no_user_line_and_the_launcher_drops_to_each_components_user(make_settings, sec):
    """supervisord starts every launcher as root (no user=): the launcher drops to --user itself, after it
    read the root-only env file; PostgreSQL and Redis to the data user, the backup schedule nowhere (root,
    like `backup create`), the rest to the service user."""
    s = make_settings(workers=2, backup_interval_minutes="60")
    comps = build(s, sec)
    without = supervisor.render(s, comps, None)
    assert not any(line.startswith("user=") for line in without.splitlines())
    assert "--user" not in without
    with_users = supervisor.render(s, comps, USERS)
    assert not any(line.startswith("user=") for line in with_users.splitlines())
    progs = programs(with_users)
    for c in comps:
        [command] = [ln for ln in progs[c.name] if ln.startswith("command=")]
        argv = shlex.split(command.removeprefix("command="))
        assert argv[2:4] == (["--user", USERS[c.run_as]] if c.run_as in USERS else ["--", c.argv[0]]), c.name
        assert f"umask={supervisor.UMASK:03o}" in progs[c.name]
    assert {c.run_as for c in comps if c.name in ("postgres", "redis")} == {"data"}
    assert {c.run_as for c in comps if c.name == "backup"} == {"root"} and "root" not in USERS
    assert {c.run_as for c in comps if c.name not in ("postgres", "redis", "backup")} == {"service"}
    assert "umask=027" in with_users.split("[program:")[0]  # supervisord's own log: 0640


def test_programs_do_not_autostart_and_log_per_component(s, comps):
    progs = programs(supervisor.render(s, comps, None))
    for c in comps:
        lines = progs[c.name]
        assert "autostart=false" in lines
        assert f"priority={c.priority}" in lines
        assert f"stopsignal={c.stop_signal}" in lines
        assert f"stopwaitsecs={c.stop_timeout}" in lines
        assert f"stdout_logfile={s.component_logs_dir / (c.name + '.log')}" in lines
    assert "stopsignal=INT" in progs["postgres"]


def test_every_program_goes_through_the_launcher(s, comps):
    progs = programs(supervisor.render(s, comps, None))
    for c in comps:
        [command] = [ln for ln in progs[c.name] if ln.startswith("command=")]
        assert shlex.split(command.removeprefix("command=")) == launcher_argv(s, c), c.name


def test_environment_holds_only_the_env_file_and_the_tag(s, comps):
    progs = programs(supervisor.render(s, comps, None))
    for c in comps:
        assert [ln for ln in progs[c.name] if ln.startswith("environment=")] == [
            f'environment={ENV_FILE_ENV}="{supervisor.env_file(s, c.name)}",{TAG_ENV}="{c.name}"'
        ], c.name


def test_render_contains_no_secret(s, comps, sec, aenv):
    text = supervisor.render(s, comps, USERS)
    for field, value in dataclasses.asdict(sec).items():
        assert value not in text, field
    assert "AIRFLOW__" not in text
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__FLOWER_BASIC_AUTH"):
        assert aenv[key] not in text, key


def test_render_with_awkward_secrets_contains_none_of_them(make_settings, sec):
    odd = dataclasses.replace(sec, flower_password='fl"ow ;er', admin_password="ad'min", postgres_password="p #g\nw")
    s = make_settings(workers=1)
    comps = build(s, odd)
    text = supervisor.render(s, comps, None)
    for field, value in dataclasses.asdict(odd).items():
        assert value not in text, field
    assert set(parse(s, text)) == {"", *(c.name for c in comps)}


def test_ini_paths_double_percent():
    assert supervisor._ini(Path("/srv/50%off/x")) == "/srv/50%%off/x"


# ---------------------------------------------------------------- render: parsed by supervisord


def test_rendered_file_parses_with_supervisord(s, comps):
    parsed = parse(s, supervisor.render(s, comps, None))
    assert set(parsed) == {"", *(c.name for c in comps)}
    main = parsed[""]
    assert main.logfile == str(s.logs_dir / "supervisord.log")
    assert main.pidfile == str(s.run_dir / "supervisord.pid")
    assert main.directory == str(s.home)
    assert [sc["file"] for sc in main.server_configs] == [str(s.supervisord_socket)]
    for c in comps:
        pc = parsed[c.name]
        assert pc.priority == c.priority
        assert pc.autostart is False
        assert pc.autorestart is not False
        assert pc.startsecs == supervisor.STARTSECS
        assert pc.stopwaitsecs == c.stop_timeout
        assert pc.stopasgroup and pc.killasgroup
        assert pc.directory == str(s.home)
        assert pc.stdout_logfile == str(s.component_logs_dir / f"{c.name}.log")
        assert shlex.split(pc.command) == launcher_argv(s, c)
        assert pc.environment == {ENV_FILE_ENV: str(supervisor.env_file(s, c.name)), TAG_ENV: c.name}
        assert pc.uid is None


def test_users_parse_with_supervisord(s, comps):
    me = pwd.getpwuid(os.getuid())
    parsed = parse(s, supervisor.render(s, comps, {"service": me.pw_name, "data": me.pw_name}))
    assert {pc.uid for name, pc in parsed.items() if name} == {None}  # supervisord itself switches no user
    assert all(shlex.split(pc.command)[2:4] == ["--user", me.pw_name] for name, pc in parsed.items() if name)


def check_home_parses(make_settings, sec, dirname: str) -> None:
    s = make_settings(home=str(Path(make_settings().home) / dirname), workers=1)
    parsed = parse(s, supervisor.render(s, build(s, sec), None))
    sched = parsed["scheduler"]
    assert shlex.split(sched.command) == [str(s.venv / "bin" / "python"), str(s.run_dir / "launch.py"), "--",
                                          str(s.venv / "bin" / "airflow"), "scheduler"]
    assert sched.environment == {ENV_FILE_ENV: str(s.run_dir / "env" / "scheduler.json"), TAG_ENV: "scheduler"}
    assert sched.directory == str(s.home)
    assert sched.stdout_logfile == str(s.component_logs_dir / "scheduler.log")
    assert parsed[""].logfile == str(s.logs_dir / "supervisord.log")
    assert parsed[""].directory == str(s.home)


@pytest.mark.parametrize("dirname", ["my home", "a,b", "a=b", "é"])
def test_home_with_unusual_but_plain_characters_parses(make_settings, sec, dirname):
    check_home_parses(make_settings, sec, dirname)


@pytest.mark.parametrize("dirname", ["50%off", "o'brien", 'say "x"', "a ;b", "a#b", "a;b", "tab\there", "back\\slash"])
def test_home_supervisord_cannot_carry_is_refused_at_resolve(make_settings, dirname):
    with pytest.raises(CommandError, match="supervisord's config cannot carry"):
        make_settings(home=str(Path(make_settings().home) / dirname))
