"""Public path of the DAG authors' test helpers: `pytest -p airflow_resource.testing`,
`from airflow_resource.testing import assert_dags_import_cleanly`. The code is in dags/testing.py."""

from airflow_resource.dags.testing import (  # noqa: F401
    DAGS_DIR_ENV,
    DAGS_DIR_INI,
    DEFAULT_DAGS_DIR,
    assert_dags_import_cleanly,
    dag_import_errors,
    dags_dir_for,
    load_dag_bag,
)

try:  # the pytest plugin's hook and fixture, when pytest is importable
    from airflow_resource.dags.testing import dag_bag, pytest_addoption  # noqa: F401
except ImportError:
    pass
