"""Performance profiles (config/profiles.py): the setting, its check, and what each renders."""

from __future__ import annotations

import pytest

from airflow_resource.config import airflow_config, profiles
from airflow_resource.errors import CommandError

pytestmark = pytest.mark.unit


def test_balanced_by_default_and_case_is_forgiven(make_settings):
    assert make_settings().profile == "balanced" == profiles.DEFAULT
    assert make_settings({"APACHE_AIRFLOW_PROFILE": " Quiet "}).profile == "quiet"


def test_an_unknown_profile_is_refused_with_the_choices(make_settings):
    with pytest.raises(CommandError) as exc:
        make_settings({"APACHE_AIRFLOW_PROFILE": "turbo"})
    assert "'turbo'" in exc.value.message and all(f"'{n}'" in exc.value.message for n in profiles.NAMES)
    assert "APACHE_AIRFLOW_PROFILE" in exc.value.hint


@pytest.mark.parametrize("name", profiles.NAMES)
def test_each_profile_sets_the_idle_intervals(make_settings, name):
    p, t = profiles.PROFILES[name], airflow_config.tuning(make_settings(profile=name))
    assert float(t["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"]) == p.scheduler_idle_sleep_s
    assert int(t["AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"]) == p.dag_refresh_s
    assert int(t["AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC"]) == p.job_heartbeat_s
    assert int(t["AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL"]) == p.task_heartbeat_s


def test_profiles_order_from_soonest_to_quietest():
    sleeps = [profiles.PROFILES[n].scheduler_idle_sleep_s for n in profiles.NAMES]
    assert profiles.NAMES[0] == "latency" and profiles.NAMES[-1] == "quiet" and sleeps == sorted(sleeps)
