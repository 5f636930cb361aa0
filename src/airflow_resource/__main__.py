from airflow_resource.cli import main

raise SystemExit(main())
