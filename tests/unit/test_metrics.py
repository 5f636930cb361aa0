"""The metrics component: table entry, Airflow's statsd settings, the mapping file, the exporter, the dashboard."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from airflow_resource.config import airflow_config
from airflow_resource.stack import components
from airflow_resource.daemons import metrics
from airflow_resource.stack.components import DATA
from airflow_resource.daemons.metrics import mapping
from airflow_resource.daemons.metrics.exporter import StatsdExporter

pytestmark = pytest.mark.unit

from airflow_resource.paths import REPO_ROOT as REPO  # noqa: E402
DASHBOARD = REPO / "dashboards" / "airflow.json"
# Metrics the exporter serves itself (not from a mapping rule).
OWN_METRICS = {"airflow_celery_queue_length", "airflow_celery_workers"}
OWN_COUNTERS = {"statsd_exporter_lines", "statsd_exporter_udp_packets", "statsd_exporter_events",
                "statsd_exporter_events_unmapped", "statsd_exporter_events_dropped", "statsd_exporter_lines_invalid",
                "statsd_exporter_events_conflict"}


@pytest.fixture(scope="module")
def mapper() -> mapping.Mapper:
    return mapping.load(metrics.MAPPING_FILE)


def exposition(exp: StatsdExporter) -> str:
    return generate_latest(exp.registry).decode()


def feed(exp: StatsdExporter, *lines: str) -> str:
    exp.handle_packet("\n".join(lines).encode())
    return exposition(exp)


# ---------------------------------------------------------------- the component and Airflow's settings

def test_metrics_component_in_the_table(make_settings, sec):
    s = make_settings(metrics_port=51102, statsd_port=51125)
    by = components.by_name(components.build(s, sec))
    m = by["metrics"]
    assert m.port == 51102 and m.priority == DATA and m.airflow is False
    assert m.argv[:3] == (str(s.venv / "bin" / "python"), "-m", "airflow_resource.daemons.metrics")
    flags = dict(zip(m.argv[3::2], m.argv[4::2]))
    assert flags == {"--statsd.listen-udp": "127.0.0.1:51125", "--web.listen-address": "127.0.0.1:51102",
                     "--statsd.mapping-config": str(metrics.MAPPING_FILE)}
    assert (m.probe.kind, m.probe.target) == ("http", "http://127.0.0.1:51102/metrics")
    # The broker URL (with its password) goes through the 0600 env file, never the command line.
    assert m.env == {metrics.BROKER_ENV: airflow_config.redis_url(s, sec)}
    assert sec.redis_password not in " ".join(m.argv)


def test_metrics_starts_before_every_airflow_component(make_settings, sec):
    comps = components.build(make_settings(), sec)
    first_airflow = min(c.priority for c in comps if c.airflow)
    assert components.by_name(comps)["metrics"].priority < first_airflow


def test_airflow_env_sends_statsd_to_the_exporter(make_settings, sec):
    s = make_settings(statsd_port=51125)
    env = airflow_config.airflow_env(s, sec)
    assert env["AIRFLOW__METRICS__STATSD_ON"] == "True"
    assert env["AIRFLOW__METRICS__STATSD_HOST"] == "127.0.0.1"
    assert env["AIRFLOW__METRICS__STATSD_PORT"] == "51125"
    assert env["AIRFLOW__METRICS__STATSD_PREFIX"] == metrics.STATSD_PREFIX == "airflow"


def test_statsd_client_is_pinned_for_the_venv():
    """Without the statsd package Airflow silently falls back to no metrics at all."""
    from airflow_resource.stack import installer

    lock = (REPO / "constraints" / "lock-py3.11.txt").read_text()
    assert re.search(r"^statsd==", lock, re.M)
    assert "statsd" in installer.VENV_MODULES


def test_missing_statsd_module_makes_the_venv_incomplete(tmp_path):
    from airflow_resource.stack import installer

    site = tmp_path / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    assert installer.missing_modules(tmp_path) == ["statsd"]
    (site / "statsd").mkdir()
    (site / "statsd" / "__init__.py").write_text("")
    assert installer.missing_modules(tmp_path) == []


# ---------------------------------------------------------------- the mapping file

def test_mapping_file_is_valid_yaml_in_statsd_exporter_format(mapper):
    data = yaml.safe_load(metrics.MAPPING_FILE.read_text())
    assert isinstance(data["mappings"], list) and len(mapper.rules) == len(data["mappings"])


def test_the_exporter_binary_accepts_the_mapping_file():
    proc = subprocess.run([sys.executable, "-m", "airflow_resource.daemons.metrics", "--statsd.mapping-config",
                           str(metrics.MAPPING_FILE), "--check-config"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "mappings ok" in proc.stdout


@pytest.mark.parametrize("text, message", [
    ("mappings: [{match: 'a.*', name: 'bad name'}]", "invalid metric name"),
    ("mappings: [{match: 'a.*', name: x, labels: {'1x': '$1'}}]", "invalid label name"),
    ("mappings: [{match: '(', match_type: regex, name: x}]", "invalid regex"),
    ("mappings: [{match: 'a.*', name: x, match_metric_type: timer}]", "match_metric_type"),
    ("mappings: [{match: 'a.*', name: x, bukets: [1]}]", "unknown key"),
    ("mappings: [{match: 'a.*', name: x, buckets: [2, 1]}]", "increasing"),
    ("mappings: [{match: 'a b', name: x}]", "invalid glob"),
    ("mapping: []", "mappings"),
    ("mappings: [a: b", "not valid YAML"),
])
def test_invalid_mapping_files_are_refused(tmp_path, text, message):
    path = tmp_path / "m.yml"
    path.write_text(text)
    with pytest.raises(mapping.MappingError, match=message):
        mapping.load(path)
    proc = subprocess.run([sys.executable, "-m", "airflow_resource.daemons.metrics", "--statsd.mapping-config", str(path),
                           "--check-config"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and message.split()[0] in proc.stderr


@pytest.mark.parametrize("statsd, metric_type, name, labels", [
    ("airflow.scheduler_heartbeat", "counter", "airflow_scheduler_heartbeat", {}),
    ("airflow.ti.finish.example_bash.run_me_0.success", "counter", "airflow_ti_finish",
     {"dag_id": "example_bash", "task_id": "run_me_0", "state": "success"}),
    ("airflow.ti.start.example_bash.run_me_0", "counter", "airflow_ti_start",
     {"dag_id": "example_bash", "task_id": "run_me_0"}),
    ("airflow.dag.example_bash.run_me_0.duration", "observer", "airflow_task_duration_seconds",
     {"dag_id": "example_bash", "task_id": "run_me_0"}),
    ("airflow.dagrun.duration.failed.etl", "observer", "airflow_dagrun_duration_seconds",
     {"dag_id": "etl", "state": "failed"}),
    ("airflow.dagrun.schedule_delay.etl", "observer", "airflow_dagrun_schedule_delay_seconds", {"dag_id": "etl"}),
    ("airflow.executor.open_slots.CeleryExecutor", "gauge", "airflow_executor_open_slots",
     {"executor": "CeleryExecutor"}),
    ("airflow.pool.running_slots.default_pool", "gauge", "airflow_pool_running_slots", {"pool": "default_pool"}),
    ("airflow.dag_processing.last_duration.dags-folder.example_bash__py", "observer",
     "airflow_dag_processing_last_duration_seconds", {"bundle": "dags-folder", "dag_file": "example_bash__py"}),
    ("airflow.triggerer.capacity_left.host__example__com", "gauge", "airflow_triggerer_capacity_left",
     {"hostname": "host__example__com"}),
    ("airflow.operator_failures_BashOperator", "counter", "airflow_operator_failures", {"operator": "BashOperator"}),
    ("airflow.task_instance_created_BashOperator", "counter", "airflow_task_instance_created",
     {"operator": "BashOperator"}),
    ("airflow.triggers.failed", "counter", "airflow_triggers_failed", {}),  # unmapped: escaped name
])
def test_airflow_names_map_to_labelled_families(mapper, statsd, metric_type, name, labels):
    got = mapper.map(statsd, metric_type)
    assert got is not None and (got.name, got.labels) == (name, labels)


@pytest.mark.parametrize("modern", ["airflow.ti.finish", "airflow.ti.start", "airflow.task.duration",
                                    "airflow.executor.open_slots", "airflow.pool.open_slots",
                                    "airflow.dagrun.duration.success", "airflow.triggerer.capacity_left",
                                    "airflow.operator_failures", "airflow.task_instance_created"])
def test_untagged_duplicates_of_labelled_families_are_dropped(mapper, modern):
    assert mapper.map(modern, "counter") is None


def _airflow_registry() -> list[dict]:
    airflow = pytest.importorskip("airflow._shared.observability.metrics")
    path = Path(airflow.__file__).with_name("metrics_template.yaml")
    if not path.exists():
        pytest.skip("Airflow's metrics registry is not in this venv")
    data = yaml.safe_load(path.read_text())
    return [m for section in data.values() if isinstance(section, list) for m in section if isinstance(m, dict)] \
        if isinstance(data, dict) else data


def test_every_metric_airflow_registers_maps_without_conflict(mapper):
    """Airflow emits each metric under its modern name and its legacy (dotted) name: none may collide."""
    exp = StatsdExporter(mapper)
    kinds = {"counter": "c", "gauge": "g", "timer": "ms"}
    entries = _airflow_registry()
    assert len(entries) > 50
    for m in entries:
        kind = kinds.get(m.get("type"))
        if not kind:
            continue
        for name in (m["name"], m.get("legacy_name", "-")):
            if name and name != "-":
                stat = re.sub(r"\{[a-z_]+\}", "x", name)
                exp.handle_line(f"airflow.{stat}:1|{kind}")
    text = exposition(exp)
    assert "statsd_exporter_events_conflict_total" not in text or not re.search(
        r"^statsd_exporter_events_conflict_total\{[^}]*\} [1-9]", text, re.M), text
    assert 'airflow_ti_finish_total{dag_id="x",state="x",task_id="x"} 1.0' in text


# ---------------------------------------------------------------- the exporter

def test_exporter_counts_gauges_and_times(mapper):
    exp = StatsdExporter(mapper)
    text = feed(exp,
                "airflow.ti.finish.example_bash.run_me_0.success:1|c",
                "airflow.ti.finish.example_bash.run_me_0.success:1|c|@0.5",
                "airflow.executor.open_slots.CeleryExecutor:16|g",
                "airflow.executor.open_slots.CeleryExecutor:-2|g",
                "airflow.dag.example_bash.run_me_0.duration:1500|ms",
                "not a statsd line")
    assert 'airflow_ti_finish_total{dag_id="example_bash",state="success",task_id="run_me_0"} 3.0' in text
    assert 'airflow_executor_open_slots{executor="CeleryExecutor"} 14.0' in text
    assert 'airflow_task_duration_seconds_sum{dag_id="example_bash",task_id="run_me_0"} 1.5' in text
    assert 'airflow_task_duration_seconds_bucket{dag_id="example_bash",le="2.5",task_id="run_me_0"} 1.0' in text
    assert "statsd_exporter_lines_invalid_total 1.0" in text


def test_a_type_clash_is_counted_not_raised(mapper):
    exp = StatsdExporter(mapper)
    text = feed(exp, "airflow.scheduler_heartbeat:1|c", "airflow.scheduler_heartbeat:5|g")
    assert "airflow_scheduler_heartbeat_total 1.0" in text


# ---------------------------------------------------------------- the dashboard

def exposed_names(mapper: mapping.Mapper) -> set[str]:
    """Every series name the exporter can serve: mapped families with their suffixes, and its own."""
    out = set(OWN_METRICS) | {n + "_total" for n in OWN_COUNTERS}
    for name, kind in mapping.family_names(mapper).items():
        if kind in ("counter", "any"):
            out.add(name + "_total")
        if kind in ("gauge", "any"):
            out.add(name)
        if kind in ("observer", "any"):
            out |= {name + "_bucket", name + "_sum", name + "_count"}
    return out


def dashboard_metric_names() -> set[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert exprs, "the dashboard has no queries"
    names = set()
    for e in exprs:
        e = re.sub(r'"[^"]*"', "", e)           # label values
        e = re.sub(r"\{[^}]*\}", "", e)          # label matchers
        e = re.sub(r"\b(by|without)\s*\([^)]*\)", "", e)
        e = re.sub(r"\[[^\]]*\]", "", e)         # ranges
        names |= {n for n in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e) if n.startswith(("airflow_", "statsd_"))}
    return names


def test_dashboard_is_valid_grafana_json():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] and dash["panels"]
    assert all(p["datasource"]["type"] == "prometheus" for p in dash["panels"])


def test_dashboard_uses_only_metrics_the_exporter_serves(mapper):
    used = dashboard_metric_names()
    assert {"airflow_scheduler_heartbeat_total", "airflow_ti_finish_total"} <= used
    assert used <= exposed_names(mapper), sorted(used - exposed_names(mapper))
