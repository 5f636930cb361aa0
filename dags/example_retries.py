"""
### example_retries

`flaky` has `retries=1` and a 3 s `retry_delay`. It fails on purpose on its
first try and succeeds on the second, which the task decides from its try
number (`ti.try_number` in the context, 1 on the first try). The run ends in
`success`; the task instance shows try 2, and the log of try 1 shows the
planned failure.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, get_current_context, task


@dag(
    dag_id="example_retries",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "retries"],
    doc_md=__doc__,
)
def example_retries():
    @task(retries=1, retry_delay=timedelta(seconds=3))
    def flaky() -> int:
        try_number = get_current_context()["ti"].try_number
        if try_number == 1:
            raise RuntimeError("planned failure on try 1; the retry will succeed")
        print(f"succeeded on try {try_number}")
        return try_number

    flaky()


example_retries()
