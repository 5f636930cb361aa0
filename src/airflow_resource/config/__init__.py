"""Settings, secrets, pinned sets and the Airflow environment: what every other package reads.

Runs in the CLI (root or the operator) and in our daemons (the service user); imports only the
standard library, third-party packages, the shared base (errors, paths), this package and
in_airflow's constants; never stack/ (stack reads config, not the other way round).
"""
