"""Work every task process of a Celery worker would do once for itself, done once in the worker before its
pool forks (loaded through Celery's `imports`, celery_config.py), so each task inherits it.

A task process (airflow.sdk.execution_time.task_runner) loads the plugins (the plugins folder, then every
installed distribution's entry points: ~195 here), integrates their macros, builds the listener manager
and imports the DAG bag module; all of it is cached per process (functools.cache), and a forked child
inherits the parent's caches. Nothing here may stop a worker from starting: a failure is logged and the
tasks do the work themselves, as they would without this module.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


def warm() -> float:
    """Seconds spent; the caches a task would fill are filled."""
    started = time.monotonic()
    try:
        import airflow.dag_processing.dagbag  # noqa: F401 - the task runner imports it to load its DAG file
        from airflow.sdk import plugins_manager
        from airflow.sdk.listener import get_listener_manager

        plugins_manager.integrate_macros_plugins()  # loads the plugins (cached) and their macros
        get_listener_manager()                      # and their listeners
    except Exception:  # noqa: BLE001 - see the module docstring
        log.warning("apache-airflow resource: warming the worker before its pool forks failed; tasks load "
                    "plugins themselves", exc_info=True)
    return time.monotonic() - started


SECONDS = warm()
