"""Celery configuration of the stack's workers: Airflow's own, plus modules imported once at start.

Every task runs in a process forked from a worker's pool child, and imports whatever that child has
not imported yet: the task runner, the operators, the DAG file's modules. Imported once in the
worker's main process (Celery's `imports`, loaded before the pool forks), they are inherited by every
task process instead of being imported again per task. Set by [celery] celery_config_options.
"""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

PRELOAD = (
    "airflow.sdk.execution_time.task_runner",
    "airflow.dag_processing.importers.python_importer",
    "airflow.providers.standard.operators.python",
    "airflow.providers.standard.operators.bash",
    "airflow.providers.standard.operators.empty",
    "airflow.providers.standard.decorators.python",
    "airflow.providers.standard.sensors.time_delta",
    "airflow.providers.common.sql.hooks.sql",
    "airflow.providers.postgres.hooks.postgres",
    # Last: plugins, macros and listeners loaded once (worker_warmup.py), after the modules above.
    "airflow_resource.in_airflow.worker_warmup",
)

CELERY_CONFIG = {**DEFAULT_CELERY_CONFIG, "imports": (*DEFAULT_CELERY_CONFIG.get("imports", ()), *PRELOAD)}

# The same without the warm-up (worker_warmup.py): what it saves is measured against this one.
CELERY_CONFIG_COLD = {**DEFAULT_CELERY_CONFIG,
                      "imports": (*DEFAULT_CELERY_CONFIG.get("imports", ()), *PRELOAD[:-1])}
