"""
### example_batch_items

10,000 small items processed in batches: the pattern for work made of many tiny units.

Each task instance costs the stack a fixed ~0.3 CPU-s (a forked task process, its Execution API
calls, the scheduler's bookkeeping), whatever it does. One task per item would spend that 10,000
times; here `process` is expanded over a literal list of 20 chunk bounds (known when the DAG is
parsed, so no upstream task computes them), and each mapped instance handles 500 items in one
process. `total` checks that every item was seen once. Change `ITEMS` and `CHUNK` to fit your own
work: a chunk should take a few seconds or more, so the per-task cost stays small beside it.
"""

from __future__ import annotations

import hashlib

import pendulum
from airflow.sdk import dag, task

ITEMS = 10_000
CHUNK = 500
BOUNDS = [[start, min(start + CHUNK, ITEMS)] for start in range(0, ITEMS, CHUNK)]


@dag(
    dag_id="example_batch_items",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "dynamic-mapping", "performance"],
    doc_md=__doc__,
)
def example_batch_items():
    @task
    def process(bounds: list[int]) -> dict[str, int]:
        start, end = bounds
        digest = 0
        for item in range(start, end):  # one small unit of work per item: hash its record
            record = f"item-{item}".encode()
            digest ^= int.from_bytes(hashlib.sha256(record).digest()[:4], "big")
        return {"items": end - start, "digest": digest}

    @task
    def total(results: list[dict[str, int]]) -> int:
        seen = sum(r["items"] for r in results)
        if seen != ITEMS:
            raise ValueError(f"{seen} items processed, {ITEMS} expected")
        print(f"{ITEMS} items in {len(results)} batches of up to {CHUNK}")
        return seen

    total(process.expand(bounds=BOUNDS))


example_batch_items()
