"""The bench's workloads: the DAG files it writes into the home it measures, and how big each one is.

The resource's bench (measure.Bench) and the standalone baseline (baseline.StandaloneBench) run the
same ones, so their figures compare.
"""

from __future__ import annotations

from dataclasses import dataclass

ONE_TASK = '''
import pendulum
from airflow.sdk import dag, task

@dag(dag_id="bench_one", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bench_one():
    @task
    def noop():
        return 1
    noop()

bench_one()
'''
CHAIN = '''
import pendulum
from airflow.sdk import dag, task

@dag(dag_id="bench_chain", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def bench_chain():
    @task
    def first():
        return 1
    @task
    def second(x):
        return x + 1
    second(first())

bench_chain()
'''
FANOUT = '''
import pendulum
from airflow.sdk import dag, task

@dag(dag_id="bench_fanout", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     params={"n": 200}, max_active_tasks=1024)
def bench_fanout():
    @task
    def items(params=None):
        return list(range(int(params["n"])))
    @task
    def work(i):
        return i
    work.expand(i=items())

bench_fanout()
'''
TEN_TASKS = '''
import pendulum
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG(dag_id="bench_file_{i:03d}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
    prev = None
    for t in range(10):
        op = EmptyOperator(task_id=f"t{{t}}")
        if prev:
            prev >> op
        prev = op
'''


BENCH_DAGS = {"bench_one.py": ONE_TASK, "bench_chain.py": CHAIN, "bench_fanout.py": FANOUT}


@dataclass
class Sizes:
    latency_runs: int = 20
    fanout: int = 200
    big: int = 1000
    files: int = 100
    runs_in_db: int = 10_000
    probes: int = 100

    @classmethod
    def quick(cls) -> "Sizes":
        return cls(latency_runs=3, fanout=20, big=40, files=5, runs_in_db=50, probes=10)
