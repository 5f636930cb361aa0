"""`bench`: the resource measured in a temporary home, and the same workloads against `airflow standalone`.

Runs in the CLI.
"""
