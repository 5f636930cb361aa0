"""Component logs (supervisord writes them) and task logs (Airflow writes them): read, search, follow.

Runs in the CLI.
"""
