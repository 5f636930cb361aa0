"""
### example_taskflow_xcom

TaskFlow passes values between tasks through XCom: each task's return value
is stored, and calling a task with another task's result wires the
dependency and pulls the value at run time.

* `extract` returns a list (one XCom, `return_value`).
* `summarize` uses `multiple_outputs=True`: each key of the returned dict is
  also pushed as its own XCom (`count`, `total`, `mean`), so downstream tasks
  can take just one of them with `summary["total"]`.
* `report` receives the whole dict and a single key, and checks they agree.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

ORDERS = [12.5, 7.25, 30.0, 4.75]  # small literal data: nothing is read at parse time


@dag(
    dag_id="example_taskflow_xcom",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "taskflow", "xcom"],
    doc_md=__doc__,
)
def example_taskflow_xcom():
    @task
    def extract() -> list[float]:
        return list(ORDERS)

    @task(multiple_outputs=True)
    def summarize(amounts: list[float]) -> dict[str, float]:
        total = round(sum(amounts), 2)
        return {"count": len(amounts), "total": total, "mean": round(total / len(amounts), 2)}

    @task
    def double(total: float) -> float:
        return round(total * 2, 2)

    @task
    def report(summary: dict[str, float], total: float, doubled: float) -> str:
        # XCom values arrive as plain Python values (JSON round-trip).
        if summary["total"] != total or doubled != 2 * total:
            raise ValueError(f"XCom values disagree: {summary=} {total=} {doubled=}")
        line = f"{summary['count']} orders, total {total}, mean {summary['mean']}, doubled {doubled}"
        print(line)
        return line

    summary = summarize(extract())
    # summary["total"] pulls only the `total` XCom pushed by multiple_outputs.
    report(summary, summary["total"], double(summary["total"]))


example_taskflow_xcom()
