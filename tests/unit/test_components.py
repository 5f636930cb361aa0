"""components.build / groups: the one component table the stack derives from."""

from __future__ import annotations

import socket

import pytest

from airflow_resource.config import airflow_config
from airflow_resource.stack import components
from airflow_resource.config import settings
from airflow_resource.stack.components import API, CORE, DATA, EDGE
from airflow_resource.errors import CommandError

pytestmark = pytest.mark.unit

PG_BIN = "/usr/lib/postgresql/15/bin"
REDIS = "/usr/bin/redis-server"


def build(s, sec):
    return components.build(s, sec, PG_BIN, REDIS)


def names(comps):
    return [c.name for c in comps]


def test_embedded_stack_components_in_start_order(make_settings, sec):
    comps = build(make_settings(), sec)
    assert names(comps) == ["postgres", "redis", "metrics", "api-server", "scheduler", "dag-processor", "triggerer",
                            "worker-1", "flower", "housekeeper"]
    prios = [c.priority for c in comps]
    assert prios == sorted(prios)


def test_embedded_datastores(make_settings, sec):
    s = make_settings(postgres_port=51432, redis_port=51379)
    by = components.by_name(build(s, sec))
    pg, redis = by["postgres"], by["redis"]
    assert pg.argv == (f"{PG_BIN}/postgres", "-D", str(s.postgres_dir))
    assert pg.port == 51432 and pg.stop_signal == "INT" and pg.airflow is False
    assert pg.probe.kind == "postgres"
    assert "port=51432" in pg.probe.target and f"password={sec.postgres_superuser_password}" in pg.probe.target
    assert redis.argv == (REDIS, str(s.redis_dir / "redis.conf"))
    assert redis.port == 51379 and redis.airflow is False
    assert redis.probe.kind == "redis" and redis.probe.target == airflow_config.redis_url(s, sec)


def test_redis_server_defaults_to_path_lookup(make_settings, sec):
    by = components.by_name(components.build(make_settings(), sec, PG_BIN, ""))
    assert by["redis"].argv[0] == "redis-server"


@pytest.mark.parametrize("flags, absent", [
    ({"postgres_url": "postgresql://u:p@db.example:5432/af"}, {"postgres"}),
    ({"redis_url": "redis://:p@cache.example:6379/0"}, {"redis"}),
    ({"postgres_url": "postgresql://u:p@db/af", "redis_url": "redis://cache:6379/0"}, {"postgres", "redis"}),
])
def test_external_datastores_are_not_components(make_settings, sec, flags, absent):
    comps = build(make_settings(**flags), sec)
    assert not absent & set(names(comps))
    assert {"postgres", "redis"} - absent <= set(names(comps))
    assert {"api-server", "scheduler", "dag-processor", "triggerer", "worker-1", "flower"} <= set(names(comps))


def test_external_both_starts_with_the_metrics_then_the_api_group(make_settings, sec):
    comps = build(make_settings(postgres_url="postgresql://db/af", redis_url="redis://cache/0"), sec)
    assert [[c.name for c in g] for g in components.groups(comps)][:2] == [["metrics"], ["api-server"]]


def test_airflow_components_use_the_venv(make_settings, sec):
    s = make_settings()
    airflow = str(s.venv / "bin" / "airflow")
    for c in build(s, sec):
        if c.airflow:
            assert c.argv[0] == airflow, c.name
    by = components.by_name(build(s, sec))
    assert by["scheduler"].argv[1:] == ("scheduler",)
    assert by["api-server"].argv[1:] == ("api-server",)
    assert by["flower"].argv[1:] == ("celery", "flower", "--flower-conf", str(components.FLOWER_CONF))


@pytest.mark.parametrize("n", [0, 1, 3, 8])
def test_n_workers(make_settings, sec, n):
    s = make_settings(workers=n, log_server_port=50100)
    comps = build(s, sec)
    workers = [c for c in comps if c.name.startswith("worker-")]
    assert names(workers) == [f"worker-{i}" for i in range(1, n + 1)]
    ports = [w.port for w in workers]
    assert ports == [50100 + i for i in range(1, n + 1)]
    triggerer = components.by_name(comps)["triggerer"]
    assert triggerer.port == 50100
    assert len(set(ports + [triggerer.port])) == n + 1
    hostnames = [w.argv[w.argv.index("--celery-hostname") + 1] for w in workers]
    assert len(set(hostnames)) == n
    for i, w in enumerate(workers, start=1):
        assert w.env == {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(50100 + i)}
        assert w.probe.kind == "celery"
        assert w.probe.target == hostnames[i - 1] == f"worker-{i}@{socket.gethostname()}"
        assert w.stop_timeout == 30  # the stop_grace_seconds default
        assert w.priority == CORE


def test_groups_order(make_settings, sec):
    comps = build(make_settings(workers=2), sec)
    groups = components.groups(comps)
    assert [[c.name for c in g] for g in groups] == [
        ["postgres", "redis", "metrics"],
        ["api-server"],
        ["scheduler", "dag-processor", "triggerer", "worker-1", "worker-2"],
        ["flower", "housekeeper"],
    ]
    assert [g[0].group for g in groups] == ["data", "api", "core", "edge"]
    assert DATA < API < CORE < EDGE


def test_groups_is_independent_of_input_order(make_settings, sec):
    comps = build(make_settings(), sec)
    assert components.groups(list(reversed(comps)))[0][0].group == "data"
    assert [g[0].priority for g in components.groups(list(reversed(comps)))] == [DATA, API, CORE, EDGE]


def test_every_port_is_distinct_by_default(make_settings, sec):
    s = make_settings()
    comps = build(s, sec)
    ports = [c.port for c in comps if c.port is not None] + [s.statsd_port]  # metrics_port: the metrics component
    assert len(ports) == len(set(ports)), sorted(ports)
    defaults = [st.default for st in settings.SETTINGS if st.name.endswith("_port")]
    assert len(defaults) == len(set(defaults))


def test_component_ports_follow_settings(make_settings, sec):
    s = make_settings(api_port=51080, flower_port=51555, scheduler_health_port=51974)
    by = components.by_name(build(s, sec))
    assert by["api-server"].port == 51080
    assert by["flower"].port == 51555
    assert by["flower"].probe.target == "http://127.0.0.1:51555/healthcheck"
    assert (by["flower"].probe.user, by["flower"].probe.secret) == (s.admin_user, sec.flower_password)
    assert by["scheduler"].port == 51974
    assert by["scheduler"].probe.target == "http://127.0.0.1:51974/health"
    assert by["dag-processor"].port is None
    assert (by["dag-processor"].probe.kind, by["dag-processor"].probe.target) == ("health_key", "dag_processor")
    assert by["api-server"].probe.kind == "api"


@pytest.mark.parametrize("log_server_port, workers", [(65535, 0), (65534, 1), (65471, 64), (1, 64)])
def test_accepted_settings_never_give_an_invalid_port(make_settings, sec, log_server_port, workers):
    s = make_settings(log_server_port=log_server_port, workers=workers)
    assert all(1 <= c.port <= 65535 for c in build(s, sec) if c.port is not None)


@pytest.mark.parametrize("log_server_port, workers", [(65535, 1), (65500, 64)])
def test_log_server_port_plus_workers_over_65535_is_refused(make_settings, log_server_port, workers):
    """Fixed: both are inside their own ranges, but worker i serves logs on log_server_port + i: resolve refuses the sum."""
    with pytest.raises(CommandError) as exc:
        make_settings(log_server_port=log_server_port, workers=workers)
    assert "log_server_port" in exc.value.message
    assert str(log_server_port + workers) in exc.value.message
    assert "APACHE_AIRFLOW_LOG_SERVER_PORT" in exc.value.hint and "APACHE_AIRFLOW_WORKERS" in exc.value.hint


def test_metrics_port_is_served_by_a_component(make_settings, sec):
    s = make_settings()
    assert s.metrics_port in {c.port for c in build(s, sec)}


def test_warm_up_reaches_every_api_server_worker_concurrently(make_settings, monkeypatch, capsys):
    import threading
    import time

    from airflow_resource.stack import probes
    from airflow_resource.stack import oneoffs

    calls, inside, most = [], [0], [0]
    lock = threading.Lock()

    def fake_get(url, timeout, ca_file=None):
        with lock:
            calls.append(url)
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        with lock:
            inside[0] -= 1
        return 200, b"{}"

    monkeypatch.setattr(probes, "http_get", fake_get)
    s = make_settings(api_port=51000)
    oneoffs.warm_execution_api(s, time.monotonic() + 10)
    assert calls == ["http://127.0.0.1:51000/execution/health"] * 4  # 2 workers, twice each
    assert most[0] > 1  # at once: a worker busy building accepts nothing, so the others get the rest
    assert "Execution API warm" in capsys.readouterr().err


def test_warm_up_failure_only_warns(make_settings, monkeypatch, capsys):
    import time

    from airflow_resource.stack import probes
    from airflow_resource.stack import oneoffs

    def refused(url, timeout, ca_file=None):
        raise ConnectionRefusedError(111, "refused")

    monkeypatch.setattr(probes, "http_get", refused)
    oneoffs.warm_execution_api(make_settings(), time.monotonic() + 1)
    assert "first tasks may wait" in capsys.readouterr().err


def test_every_listening_component_names_the_setting_that_moves_its_port(make_settings, sec):
    s = make_settings(workers=2)
    for c in build(s, sec):
        if c.port:
            setting = settings.BY_NAME[c.port_setting]
            assert setting in settings.PORT_SETTINGS
            base = getattr(s, c.port_setting)
            assert c.port == base or (c.port_setting == "log_server_port" and base < c.port <= base + s.workers)


@pytest.mark.parametrize("component, env", [("api-server", "APACHE_AIRFLOW_API_PORT"),
                                            ("worker-1", "APACHE_AIRFLOW_LOG_SERVER_PORT")])
def test_a_port_in_use_names_its_setting(make_settings, sec, component, env):
    from airflow_resource.stack import startup

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        (c,) = [c for c in build(make_settings(), sec) if c.name == component]
        comps = [components.Component(c.name, c.argv, c.probe, c.priority, port, c.port_setting)]
        with pytest.raises(CommandError) as exc:
            startup.check_ports(comps)
    assert f"port {port} for {component} is in use" in exc.value.message
    assert f"{env}=<port>" in exc.value.hint
