import sys

from airflow_resource.daemons.metrics.exporter import main

sys.exit(main())
