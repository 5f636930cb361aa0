# Flower's configuration file for the resource: `airflow celery flower --flower-conf <this file>`
# (components.py). Flower executes it at start (tornado.options.parse_config_file); it sets no option,
# it only puts the login limit in front of Flower's basic auth (flower_guard.py).
from airflow_resource.in_airflow import flower_guard as _resource_flower_guard

_resource_flower_guard.install()
