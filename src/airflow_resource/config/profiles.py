"""Performance profiles (APACHE_AIRFLOW_PROFILE): how often the stack's loops wake when there is nothing
to do, which sets both how soon a triggered run starts and how much CPU an idle stack burns.

Airflow's scheduler polls: with no wake-up path, its idle sleep bounds the latency of a run and each
idle loop costs ~35 ms of CPU (scheduler and PostgreSQL). One row per profile; airflow_config.tuning()
renders the chosen row, and docs/configuration.md ("Profiles") shows each one's measured figures.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT = "balanced"


@dataclass(frozen=True)
class Profile:
    name: str
    scheduler_idle_sleep_s: float   # [scheduler] scheduler_idle_sleep_time: latency against idle CPU
    dag_refresh_s: int              # [dag_processor] refresh_interval: a dropped DAG file is seen within it
    job_heartbeat_s: int            # [scheduler]/[triggerer] job heartbeats (liveness rows in the database)
    # [workers] min_heartbeat_interval: a running task's heartbeat period (one Execution API call each,
    # ~15 ms of api-server CPU), and how long a finished trivial task can hold its Celery slot.
    task_heartbeat_s: int
    summary: str


PROFILES = {p.name: p for p in (
    Profile("latency", 0.1, 1, 5, 1, "runs start and finished tasks are seen soonest; the most idle CPU"),
    Profile("balanced", 0.25, 2, 5, 1, "the default: sub-second one-task runs at a moderate idle cost"),
    Profile("quiet", 2.0, 10, 10, 2, "for a machine that idles most of the day: ~2-4 s more per run, least CPU"),
)}
NAMES = tuple(PROFILES)


def get(name: str) -> Profile:
    return PROFILES[name.strip().lower()]
