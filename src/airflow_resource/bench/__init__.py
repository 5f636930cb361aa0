"""`./cli.sh bench`: the resource measured in a temporary home, and the same workloads against `airflow standalone`.

Runs in the CLI. harness.run() is the entry; measure.Bench measures a stack, baseline.StandaloneBench
the same workloads (workloads.py) against standalone; report.py prints and writes the figures.
"""
