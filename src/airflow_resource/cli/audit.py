"""`./cli.sh audit`: Airflow's event log, with the resource's own actions and failed logins in it."""

from __future__ import annotations

import argparse

from airflow_resource.cli.common import settings


def cmd_audit(args: argparse.Namespace) -> int:
    from airflow_resource.audit import query

    return query.show(settings(args, running=True), args.format, args.since, args.until, args.user, args.dag,
                      args.event, args.limit)
