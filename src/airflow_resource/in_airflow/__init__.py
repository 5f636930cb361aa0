"""What Airflow's own processes import: the listener plugin, the disk guard, the Celery config, the alert spool.

Runs inside the scheduler, api-server, workers and task processes, as the service user: imports only the
standard library, Airflow and this package (tests/unit/test_layout.py enforces it).
"""
