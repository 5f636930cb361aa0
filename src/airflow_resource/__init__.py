"""apache-airflow resource: one command gives a team a real Airflow 3 stack."""

RESOURCE_NAME = "apache-airflow"
AIRFLOW_VERSION = "3.3.2"
__version__ = "0.1.0"
