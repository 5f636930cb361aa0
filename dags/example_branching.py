"""
### example_branching

`choose` is a `@task.branch`: it returns the task id to follow, and every
other task directly downstream of it is skipped. The choice comes from the
run's `path` param (`small` by default; trigger with
`{"conf": {"path": "large"}}` to take the other branch).

`join` runs after either branch. Its trigger rule `none_failed_min_one_success`
lets it run although one of its upstream tasks is skipped; with the default
rule (`all_success`) the skip would propagate and `join` would be skipped too.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, TriggerRule, dag, task


@dag(
    dag_id="example_branching",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"path": Param("small", enum=["small", "large"], description="branch to follow")},
    tags=["example", "branching"],
    doc_md=__doc__,
)
def example_branching():
    @task.branch
    def choose(params=None) -> str:
        chosen = "small_path" if params["path"] == "small" else "large_path"
        print(f"following {chosen}")
        return chosen

    @task
    def small_path() -> str:
        return "processed in one step"

    @task
    def large_path() -> str:
        return "processed in many steps"

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def join(small: str | None, large: str | None) -> str:
        # The skipped branch pushed no XCom, so its argument arrives as None.
        outcome = small or large
        print(f"joined: {outcome}")
        return outcome

    branch = choose()
    small, large = small_path(), large_path()
    branch >> [small, large]
    join(small, large)


example_branching()
