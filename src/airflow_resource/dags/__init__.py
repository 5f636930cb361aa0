"""DAG content: files in the dags folder (files.py), runs through the REST API (runs.py), local tests, the DAG check.

Runs in the CLI; the DAG check and local tests run DAG code only in a child of the venv as the service user
(the DAG check's child is standalone/dagcheck_child.py, driven by dagcheck_driver.py).
"""
