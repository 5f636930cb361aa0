"""
### example_task_groups

`@task_group` bundles tasks into a group that the UI shows as one
collapsible box; task ids get the group id as prefix
(`per_region.validate.check_schema`).

`per_region` holds a nested group (`validate`) and is called once per region.
Each call gets its own `group_id`, so the same group definition is repeated
three times in one DAG; the group's return value (its last task's XCom) feeds
`combine` like any task's result.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task, task_group

REGIONS = {"eu": [3, 4, 5], "us": [10, 20], "apac": [7]}


@dag(
    dag_id="example_task_groups",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "task-groups"],
    doc_md=__doc__,
)
def example_task_groups():
    @task
    def extract(region: str) -> list[int]:
        return REGIONS[region]

    @task
    def check_schema(rows: list[int]) -> list[int]:
        if not all(isinstance(r, int) for r in rows):
            raise ValueError(f"non-integer rows: {rows}")
        return rows

    @task
    def check_not_empty(rows: list[int]) -> list[int]:
        if not rows:
            raise ValueError("no rows")
        return rows

    @task_group
    def validate(rows):
        # Nested group: its task ids become per_<region>.validate.<task>.
        return check_not_empty(check_schema(rows))

    @task
    def load(region: str, rows: list[int]) -> dict:
        print(f"{region}: loading {len(rows)} rows")
        return {"region": region, "rows": len(rows), "total": sum(rows)}

    @task_group
    def per_region(region: str):
        return load(region, validate(extract(region)))

    @task
    def combine(results: list[dict]) -> int:
        total = sum(r["total"] for r in results)
        print(f"{len(results)} regions, grand total {total}")
        return total

    # The same group three times, one group_id each.
    combine([per_region.override(group_id=f"per_{region}")(region) for region in REGIONS])


example_task_groups()
