"""DAG content: files in the dags folder, runs through the REST API, local tests, the DAG check.

Runs in the CLI; the DAG check and local tests run DAG code only in a child of the venv as the service user.
"""
