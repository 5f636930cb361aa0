"""`./cli.sh content` (DAG files and runs: add, list, get, remove, execute) and `./cli.sh dags` (pause, unpause, clear,
backfill, test)."""

from __future__ import annotations

import argparse
from pathlib import Path

from airflow_resource import audit
from airflow_resource.cli.common import DEFAULT_RUN_TIMEOUT_S, dag_name, path, settings
from airflow_resource.errors import CommandError

# ---------------------------------------------------------------- content


def cmd_add(args: argparse.Namespace) -> int:
    from airflow_resource.dags import files

    s = settings(args, running=True)
    source = args.file or args.path
    if not source:
        raise CommandError("content add needs --file PATH", "e.g. `./cli.sh content add --file my_dag.py`")
    with audit.action(s, audit.CONTENT_ADD, file=str(Path(source).absolute()), name=args.name,
                      force=args.force, team=args.team) as extra:
        dag_ids = files.add(s, Path(source), args.name, args.force, wait=not args.no_wait,
                            timeout=args.timeout or files.REGISTER_TIMEOUT_S, team=args.team)
        extra.update(dag_ids=dag_ids, dag_id=dag_ids[0] if len(dag_ids) == 1 else None)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from airflow_resource.dags import files

    return files.show_list(settings(args, running=True), args.format, args.filter)


def cmd_get(args: argparse.Namespace) -> int:
    from airflow_resource.dags import files

    s = settings(args, running=True)
    return files.get(s, dag_name(args), path(args.output))


def cmd_remove(args: argparse.Namespace) -> int:
    from airflow_resource.dags import files

    s = settings(args, running=True)
    name = dag_name(args)
    with audit.action(s, audit.CONTENT_REMOVE, dag_id=name, force=args.force, purge=args.purge):
        return files.remove(s, name, args.force, args.purge)


def cmd_execute(args: argparse.Namespace) -> int:
    from airflow_resource.dags import runs

    s = settings(args, running=True)
    name = dag_name(args)
    conf = runs.parse_conf(args.conf or args.options, args.param)
    return runs.execute(s, name, conf, args.wait, args.timeout or DEFAULT_RUN_TIMEOUT_S)


# ---------------------------------------------------------------- dags


def cmd_pause(args: argparse.Namespace) -> int:
    from airflow_resource.dags import runs

    s = settings(args, running=True)
    return runs.set_paused(s, dag_name(args), True)


def cmd_unpause(args: argparse.Namespace) -> int:
    from airflow_resource.dags import runs

    s = settings(args, running=True)
    return runs.set_paused(s, dag_name(args), False)


def cmd_clear(args: argparse.Namespace) -> int:
    from airflow_resource.dags import runs

    s = settings(args, running=True)
    return runs.clear(s, dag_name(args), args.run, args.all_tasks, args.wait,
                         args.timeout or DEFAULT_RUN_TIMEOUT_S)


def cmd_backfill(args: argparse.Namespace) -> int:
    from airflow_resource.dags import runs

    s = settings(args, running=True)
    name = dag_name(args)
    if not (args.start and args.end):
        raise CommandError("backfill needs --from and --to", "e.g. --from 2026-01-01 --to 2026-01-07")
    return runs.backfill(s, name, args.start, args.end, args.reprocess, args.wait,
                            args.timeout or DEFAULT_RUN_TIMEOUT_S)


def cmd_test(args: argparse.Namespace) -> int:
    from airflow_resource.dags import devtest, runs

    s = settings(args, running=True)
    return devtest.cli_run(s, dag_name(args), runs.parse_conf(args.conf, args.param), args.file)
