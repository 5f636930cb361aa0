"""Settings, secrets, pinned sets and the Airflow environment: what every other package reads.

Runs in the CLI (root or the operator) and in our daemons (the service user); imports only the
standard library, the shared base (errors, paths) and this package.
"""
