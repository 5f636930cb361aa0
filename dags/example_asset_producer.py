"""
### example_asset_producer

Produces the asset `example_greeting`. `write_greeting` writes a JSON file
to `$APACHE_AIRFLOW_DATA_DIR/example_asset/` and declares the asset in its
`outlets`: when the task succeeds, Airflow records an asset event, with the
file's path in the event's `extra`.

`example_asset_consumer` is scheduled on this asset (`schedule=[GREETING]`),
so every successful run of this DAG queues a run of the consumer (the
consumer must be unpaused).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pendulum
from airflow.sdk import Asset, dag, task

# The consumer declares the same asset; assets are matched by name and URI.
GREETING = Asset("example_greeting")


def _out_dir() -> Path:
    # The product sets APACHE_AIRFLOW_DATA_DIR for every task; the temp dir is
    # for runs outside it (e.g. `airflow dags test`).
    base = os.environ.get("APACHE_AIRFLOW_DATA_DIR") or Path(tempfile.gettempdir()) / "airflow-resource-data"
    out = Path(base) / "example_asset"
    out.mkdir(parents=True, exist_ok=True)
    return out


@dag(
    dag_id="example_asset_producer",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "assets", "producer"],
    doc_md=__doc__,
)
def example_asset_producer():
    @task(outlets=[GREETING])
    def write_greeting(run_id=None, outlet_events=None) -> str:
        import json

        # One file per run: the consumer may be triggered by several events at once.
        path = _out_dir() / f"greeting_{re.sub(r'[^A-Za-z0-9_.-]', '_', run_id)}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"greeting": "hello from example_asset_producer", "run_id": run_id}))
        tmp.replace(path)  # atomic: a reader never sees half a file
        outlet_events[GREETING].extra = {"path": str(path)}
        print(f"wrote {path}")
        return str(path)

    write_greeting()


example_asset_producer()
