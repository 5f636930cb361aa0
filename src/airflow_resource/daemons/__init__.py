"""Our own supervised daemons: housekeeper (alerts, retention, disk hold), scheduled backups, metrics.

Run by supervisord as the service user with the venv's Python (`python -m airflow_resource.daemons.X`);
they never import the CLI package.
"""
