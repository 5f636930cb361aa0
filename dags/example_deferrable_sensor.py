"""
### example_deferrable_sensor

A deferrable sensor hands its wait to the **triggerer**: `wait` starts on a
worker, defers itself (state `deferred`, worker slot freed), the triggerer
runs an async `DateTimeTrigger` until the target time, and the task then
resumes on a worker in `execute_complete` and succeeds. All of this happens
within one try.

`DateTimeSensorAsync` always defers; its `target_time` is templated to a few
seconds after the task starts. (`TimeDeltaSensor(deferrable=True)` counts
from the run's start and succeeds at once, without deferring, when that
moment has already passed.)
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import dag, task

WAIT_S = 5


@dag(
    dag_id="example_deferrable_sensor",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "sensor", "deferrable"],
    doc_md=__doc__,
)
def example_deferrable_sensor():
    @task
    def start() -> str:
        return pendulum.now("UTC").isoformat()

    wait = DateTimeSensorAsync(
        task_id="wait",
        target_time=f"{{{{ ti.start_date + macros.timedelta(seconds={WAIT_S}) }}}}",
        timeout=timedelta(minutes=5).total_seconds(),
    )

    @task
    def after_wait(started: str) -> float:
        waited = (pendulum.now("UTC") - pendulum.parse(started)).total_seconds()
        print(f"resumed {waited:.1f} s after start")
        if waited < WAIT_S:
            raise ValueError(f"only {waited:.1f} s passed; the sensor did not wait {WAIT_S} s")
        return waited

    started = start()
    started >> wait >> after_wait(started)


example_deferrable_sensor()
