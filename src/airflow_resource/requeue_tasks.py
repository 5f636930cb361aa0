"""Queue again the tasks a stop killed, through Airflow's own clear.

`manage stop` gives running tasks the stop grace to finish (Celery's warm shutdown); a task still
running then is killed with its worker, and its task instance would stay `running` until, after the
next start, the scheduler's heartbeat check failed it (retried only if it has retries left). Run by
the venv's Python as the service user with this file's source on stdin, once the workers are gone:
every task instance this machine was running whose process is dead gets its try recorded as failed
and is cleared (Airflow's clear_task_instances: a new try, whatever its retries), so the next start
runs it again. Prints one JSON line: the task instances queued again.
"""

import json
import os
import sys

ENV_HOSTNAME = "APACHE_AIRFLOW_REQUEUE_HOSTNAME"


def main() -> int:
    from sqlalchemy import select

    from airflow.models.taskinstance import TaskInstance, clear_task_instances
    from airflow.utils import timezone
    from airflow.utils.net import get_hostname
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    hostname = os.environ.get(ENV_HOSTNAME) or get_hostname()
    with create_session() as session:
        candidates = session.scalars(
            select(TaskInstance).where(
                TaskInstance.state.in_((TaskInstanceState.RUNNING, TaskInstanceState.RESTARTING)),
                TaskInstance.hostname == hostname,
            )
        ).all()
        dead = [ti for ti in candidates if not (ti.pid and _alive(ti.pid))]
        for ti in dead:
            # The try ended when its process was killed: its history entry says failed, not running.
            ti.state = TaskInstanceState.FAILED
            ti.end_date = timezone.utcnow()
        if dead:
            clear_task_instances(dead, session)
        print(json.dumps([
            {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id, "map_index": ti.map_index,
             "try_number": ti.try_number} for ti in dead
        ]))
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


if __name__ == "__main__":
    sys.exit(main())
