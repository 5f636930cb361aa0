"""The bench's rates apart from the per-task figures: how fast the scheduler alone moves task instances to
queued, and how many small items a minute the batched example DAG processes.

Scheduling rate: the stack is started again with no Celery worker, `[core] parallelism` and the default
pool opened wide, and one run of a DAG whose N tasks are expanded over a literal list (so no upstream
task must run first). Nothing executes them: the time from the trigger until all N are queued, and the
CPU the scheduler and PostgreSQL spent meanwhile, are the scheduler's own work. The PRD's "schedule
1,000+ tasks per minute" is this figure; the end-to-end rate (the 1,000-task workload) is beside it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from airflow_resource.bench.measure import WORKLOAD_POLL_S, _cpu_by_component, _shares, run_cli
from airflow_resource.errors import CommandError
from airflow_resource.paths import REPO_ROOT

if TYPE_CHECKING:
    from airflow_resource.bench.measure import Bench

SCHEDULE_DAG = '''
import pendulum
from airflow.sdk import dag, task

@dag(dag_id="bench_schedule", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     max_active_tasks={n})
def bench_schedule():
    @task
    def work(i):
        return None
    work.expand(i=list(range({n})))

bench_schedule()
'''
SCHEDULE_TIMEOUT_S = 900
ITEMS_DAG = REPO_ROOT / "dags" / "example_batch_items.py"
ITEMS = 10_000


def scheduling_rate(b: "Bench", n: int) -> None:
    """Ends with the stack running without workers: the bench stops it afterwards."""
    b.stop(record=False)
    env = {**b.env, "APACHE_AIRFLOW_WORKERS": "0", "AIRFLOW__CORE__PARALLELISM": str(4 * n)}
    _, proc = run_cli(env, "manage", "start", "--timeout", "300")
    if proc.returncode != 0:
        raise CommandError(f"manage start without workers failed:\n{proc.stderr[-3000:]}", b.hint)
    b.reconnect()
    b.api.patch("/pools/default_pool", {"slots": 4 * n}, params={"update_mask": "slots"})
    b.write_dag("bench_schedule.py", SCHEDULE_DAG.format(n=n))
    b.wait_registered(["bench_schedule"], 180)
    b.api.patch("/dags/bench_schedule", {"is_paused": False})
    groups = b.groups()

    def until_all_queued() -> float:
        started = time.monotonic()
        path = b.trigger("bench_schedule")
        while True:
            queued = b.api.get(f"{path}/taskInstances", params={"state": "queued", "limit": 1})["total_entries"]
            if queued >= n:
                return time.monotonic() - started
            if time.monotonic() - started > SCHEDULE_TIMEOUT_S:
                raise CommandError(f"{queued} of {n} task instances queued after {SCHEDULE_TIMEOUT_S} s", b.hint)
            time.sleep(WORKLOAD_POLL_S)

    spent, took = _cpu_by_component(groups, until_all_queued)
    scheduler = spent.get("scheduler", 0.0) + spent.get("postgres", 0.0)
    b.result.add(f"scheduling rate ({n} task instances to queued, no worker)", round(n / took * 60),
                 "task instances/min", ">= 1000")
    b.result.add("scheduler + PostgreSQL CPU-seconds per task instance scheduled", round(scheduler / n, 4), "CPU-s")
    b.result.add("CPU-seconds per task instance scheduled by component", _shares(spent, n, "{:.4f}"), "CPU-s")


def items(b: "Bench") -> None:
    """example_batch_items (10,000 items in 20 mapped tasks): items per minute from trigger to the run's end."""
    b.write_dag(ITEMS_DAG.name, ITEMS_DAG.read_text())
    b.wait_registered(["example_batch_items"], 180)
    b.api.patch("/dags/example_batch_items", {"is_paused": False})
    spent, took = _cpu_by_component(b.groups(), lambda: b.run("example_batch_items", poll=WORKLOAD_POLL_S))
    b.result.add(f"{ITEMS} items in 20 batches (example_batch_items) wall", round(took, 1), "s")
    b.result.add("items per minute, batched", round(ITEMS / took * 60), "items/min", ">= 10000")
    b.result.add("batched items CPU-seconds in all", round(sum(spent.values()), 1), "CPU-s")
