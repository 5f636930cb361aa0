"""Queue again the tasks a stop killed, through Airflow's own clear.

`./cli.sh manage stop` gives running tasks the stop grace to finish (Celery's warm shutdown); a task still
running then is killed with its worker, and its task instance would stay `running` until, after the
next start, the scheduler's heartbeat check failed it (retried only if it has retries left). Run by
the venv's Python as the service user with this file's source on stdin, once the workers are gone:
every task instance this machine was running has its task process killed if it still runs, its try
recorded as failed, and is cleared (Airflow's clear_task_instances: a new try, whatever its retries), so the next start
runs it again. Prints one JSON line: the task instances queued again.
"""

import json
import os
import signal
import sys
import time


def main() -> int:
    from sqlalchemy import select

    from airflow.models.taskinstance import TaskInstance, clear_task_instances
    from airflow.utils import timezone
    from airflow.utils.net import get_hostname
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    hostname = get_hostname()  # what the task processes recorded (same machine, same callable)
    with create_session() as session:
        candidates = session.scalars(
            select(TaskInstance).where(
                TaskInstance.state.in_((TaskInstanceState.RUNNING, TaskInstanceState.RESTARTING)),
                TaskInstance.hostname == hostname,
            )
        ).all()
        # The workers are stopped, but Airflow runs each task in a process group of its own, out of
        # reach of supervisord's group kill: a task process still alive past the grace is killed here
        # (it names its task instance in its title: `airflow worker -- <ti id>`).
        survivors = [ti.pid for ti in candidates if ti.pid and _runs(ti.pid, str(ti.id))]
        for pid in survivors:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while any(_runs(pid) for pid in survivors) and time.monotonic() < deadline:
            time.sleep(0.1)
        dead = [ti for ti in candidates if not (ti.pid and _runs(ti.pid, str(ti.id)))]
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


def _runs(pid: int, ti_id: str = "") -> bool:
    """Is pid a live process (whose command line names ti_id, when given)?"""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().decode(errors="replace")
        with open(f"/proc/{pid}/stat", "rb") as f:
            zombie = f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return False
    return not zombie and ti_id in cmdline


if __name__ == "__main__":
    sys.exit(main())
