"""`./cli.sh logs [COMPONENT]`, `./cli.sh logs search PATTERN`, `./cli.sh logs task DAG RUN TASK`.

Each takes its words as a list, so a wrong count is refused with an example rather than argparse's usage.
"""

from __future__ import annotations

import argparse

from airflow_resource.cli.common import settings
from airflow_resource.errors import CommandError


def cmd_show(args: argparse.Namespace) -> int:
    from airflow_resource.logs import reader

    s = settings(args, running=True)
    if len(args.words) > 1:
        raise CommandError(f"logs takes one COMPONENT, got {' '.join(args.words)}",
                           "or: logs search PATTERN, logs task DAG RUN TASK")
    return reader.show(s, args.words[0] if args.words else None, args.tail, args.follow)


def cmd_search(args: argparse.Namespace) -> int:
    from airflow_resource.logs import reader

    s = settings(args, running=True)
    if len(args.words) != 1:
        raise CommandError("logs search takes one PATTERN", "e.g. `./cli.sh logs search 'ValueError' --dag my_dag "
                           "--since 2h` (quote a pattern with spaces)")
    return reader.search(s, args.words[0], dag=args.dag, task=args.task, run=args.run, since=args.since,
                         state=args.state, components=args.component, ignore_case=args.ignore_case,
                         limit=args.limit, fmt=args.format)


def cmd_task(args: argparse.Namespace) -> int:
    from airflow_resource.logs import reader

    s = settings(args, running=True)
    if len(args.words) != 3:
        raise CommandError("logs task takes DAG RUN TASK",
                           "e.g. `./cli.sh logs task example_bash manual__2026-11-25T10:00:00+00:00 say_hello`")
    return reader.task_log(s, *args.words, try_number=args.try_number, map_index=args.map_index,
                           follow=args.follow)
