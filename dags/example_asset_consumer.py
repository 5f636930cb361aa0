"""
### example_asset_consumer

Scheduled on the asset `example_greeting` instead of on time: each
successful run of `example_asset_producer`'s `write_greeting` task creates a
run of this DAG (run type `asset_triggered`) while it is unpaused.

`read_greeting` gets the asset events that triggered the run from the
context (`triggering_asset_events`), reads the file named in each event's
`extra`, and checks it was written by the producer run that emitted the
event.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

GREETING = Asset("example_greeting")  # same name and URI as in example_asset_producer


@dag(
    dag_id="example_asset_consumer",
    schedule=[GREETING],
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "assets", "consumer"],
    doc_md=__doc__,
)
def example_asset_consumer():
    @task
    def read_greeting(triggering_asset_events=None) -> list[str]:
        import json
        from pathlib import Path

        events = list(triggering_asset_events[GREETING]) if triggering_asset_events else []
        if not events:
            raise ValueError("no triggering event for example_greeting: was this run triggered by hand?")
        greetings = []
        for event in events:
            data = json.loads(Path(event.extra["path"]).read_text())
            if data["run_id"] != event.source_run_id:
                raise ValueError(f"{event.extra['path']} is from run {data['run_id']}, "
                                 f"the event from run {event.source_run_id}")
            print(f"{event.source_dag_id}/{event.source_run_id}: {data['greeting']}")
            greetings.append(data["greeting"])
        return greetings

    read_greeting()


example_asset_consumer()
