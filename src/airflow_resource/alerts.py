"""Public path DAGs name in a Deadline Alert: `AsyncCallback("airflow_resource.alerts.deadline_missed")`.
The code is in in_airflow/alerts.py (it runs in the triggerer)."""

from airflow_resource.in_airflow.alerts import deadline_missed  # noqa: F401
