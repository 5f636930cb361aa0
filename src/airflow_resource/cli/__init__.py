"""The resource CLI (v2.0 resource contract): parse with the command table, dispatch, errors caught once.

table.py declares every command and action with its own flags, parser.py builds argparse from it, and
each command group has its module (manage, status, logs, content, backup, info), imported only when one
of its commands runs.
"""

from __future__ import annotations

import sys

from airflow_resource import printer
from airflow_resource.cli.parser import PARSER
from airflow_resource.cli.status import print_pipelines as _print_pipelines  # its name when cli was one module
from airflow_resource.errors import EXIT_ERROR, CommandError

__all__ = ["PARSER", "main", "_print_pipelines"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = PARSER.parse_args(argv or ["help"])
    spec = getattr(args, "spec", None)
    if spec is None:  # only top-level flags: what `./cli.sh help` shows
        args = PARSER.parse_args(["help"])
        spec = args.spec
    try:
        return spec.load()(args)
    except CommandError as exc:
        printer.error(exc.message, exc.hint)
        if spec.audited:
            _record_refusal(args, spec.name, exc)
        if args.verbose:
            import traceback

            traceback.print_exc()
        return exc.exit_code
    except KeyboardInterrupt:
        printer.error("interrupted")
        return 130
    except Exception as exc:  # a bug or an unforeseen failure: one line, the traceback only when asked for
        if args.verbose:
            import traceback

            traceback.print_exc()
        text = str(exc).strip().splitlines()
        what = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
        printer.error(what if args.verbose else f"{what} (rerun with --verbose for the traceback)")
        return EXIT_ERROR


def _record_refusal(args: object, action: str, exc: CommandError) -> None:
    """A refused change (bad input, unknown name, weak password) in the event log, nothing else done."""
    from airflow_resource import audit
    from airflow_resource.cli.common import settings

    try:
        s = settings(args, running=True)
    except CommandError:
        return  # no settings, no stack to record in
    audit.record(s, f"resource.{args.command}.{action}", outcome="refused", error=exc.message[:500])


if __name__ == "__main__":
    sys.exit(main())
