"""
### example_bash

Shell commands as tasks.

* `greet` is a `BashOperator`: its command is a Jinja template (`{{ run_id }}`)
  and it reads `GREETING` from `env`. `append_env=True` keeps the worker's
  environment (PATH, `APACHE_AIRFLOW_DATA_DIR`, ...) as well; without it `env`
  would replace the whole environment.
* `count_words` is a `@task.bash`: the Python function returns the command to
  run, here built from `greet`'s output, which the last line of stdout pushes
  to XCom.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag, task


@dag(
    dag_id="example_bash",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "bash"],
    doc_md=__doc__,
)
def example_bash():
    greet = BashOperator(
        task_id="greet",
        bash_command='echo "$GREETING from bash, run {{ run_id }}, try {{ ti.try_number }}"',
        env={"GREETING": "Hello"},
        append_env=True,
    )

    @task.bash
    def count_words(line: str) -> str:
        import shlex

        # The returned string is the command; pipefail makes a failing stage fail the task.
        return f"set -o pipefail; echo \"words in greeting: $(printf '%s' {shlex.quote(line)} | wc -w)\""

    count_words(greet.output)


example_bash()
