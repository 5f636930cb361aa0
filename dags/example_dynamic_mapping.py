"""
### example_dynamic_mapping

Dynamic task mapping: `make_batches` decides at run time how many batches
there are, and `process` is expanded into one mapped task instance per
batch (`.expand()`), with a constant argument shared by all of them
(`.partial()`). `reduce` receives the mapped results as one lazy list, in
map-index order, and checks there is one result per batch with the right
values.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

N_BATCHES = 5
BATCH_SIZE = 3


@dag(
    dag_id="example_dynamic_mapping",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "dynamic-mapping"],
    doc_md=__doc__,
)
def example_dynamic_mapping():
    @task
    def make_batches() -> list[list[int]]:
        numbers = list(range(1, N_BATCHES * BATCH_SIZE + 1))
        return [numbers[i:i + BATCH_SIZE] for i in range(0, len(numbers), BATCH_SIZE)]

    @task
    def process(batch: list[int], factor: int) -> int:
        result = factor * sum(batch)
        print(f"batch {batch} x {factor} = {result}")
        return result

    @task
    def reduce(results: list[int], batches: list[list[int]], factor: int) -> int:
        results = list(results)  # the lazy sequence of mapped XComs, in map_index order
        expected = [factor * sum(b) for b in batches]
        if results != expected:
            raise ValueError(f"mapped results {results} != expected {expected}")
        total = sum(results)
        print(f"{len(results)} mapped results, total {total}")
        return total

    batches = make_batches()
    factor = 10
    results = process.partial(factor=factor).expand(batch=batches)
    reduce(results, batches, factor)


example_dynamic_mapping()
