import sys

from airflow_resource.metrics.exporter import main

sys.exit(main())
