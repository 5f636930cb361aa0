"""Prometheus metrics: Airflow's statsd mapped to labelled families (see statsd_mapping.yml)."""

from __future__ import annotations

from pathlib import Path

MAPPING_FILE = Path(__file__).with_name("statsd_mapping.yml")
STATSD_PREFIX = "airflow"
BROKER_ENV = "APACHE_AIRFLOW_METRICS_BROKER_URL"  # the Celery broker, for queue length and worker count
