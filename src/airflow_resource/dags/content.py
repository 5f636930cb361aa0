"""The names callers still use from the former content module: the dags folder (files.py) and runs (runs.py).

A re-export only, for cli/__init__.py and logs/reader.py until they import files and runs themselves.
"""

from __future__ import annotations

from airflow_resource.dags.files import REGISTER_TIMEOUT_S, add, get, remove, show_list
from airflow_resource.dags.runs import backfill, clear, execute, parse_conf, set_paused, task_log

__all__ = ["REGISTER_TIMEOUT_S", "add", "backfill", "clear", "execute", "get", "parse_conf", "remove",
           "set_paused", "show_list", "task_log"]
