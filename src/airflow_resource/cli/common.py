"""What the command modules share: settings from the global flags, the DAG name, default timeouts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from airflow_resource.errors import CommandError

DEFAULT_START_TIMEOUT_S = 60
DEFAULT_STOP_TIMEOUT_S = 30
DEFAULT_RUN_TIMEOUT_S = 600
# An upgrade that times out waiting for health rolls back: give a loaded machine's start more room.
DEFAULT_UPGRADE_START_TIMEOUT_S = 180


def settings(args: argparse.Namespace, running: bool = False, damaged_ok: bool = False) -> Any:
    """The settings of --home, --set and --pinned-set over resource.toml, the environment and defaults."""
    from airflow_resource.config import settings as config

    flags: dict[str, Any] = {"home": args.home, "pinned_set": getattr(args, "pinned_set", None), **set_flags(args)}
    return config.for_running_stack(flags, damaged_ok) if running else config.resolve(flags)


def set_flags(args: argparse.Namespace) -> dict[str, str]:
    """--set KEY=VALUE items, each a known, non-secret setting."""
    from airflow_resource.config import settings as config

    flags: dict[str, str] = {}
    for item in getattr(args, "set", None) or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_").lower()
        if not sep or key not in config.BY_NAME:
            raise CommandError(f"--set {key or item!r}: expected KEY=VALUE with a known key",
                               f"known keys: {', '.join(config.BY_NAME)}")
        if config.BY_NAME[key].secret:  # a command line is visible in ps and shell history
            raise CommandError(f"--set {key}: this setting may hold a credential and is not taken from a command line",
                               f"set {config.BY_NAME[key].env} in the environment or {key} in resource.toml")
        flags[key] = value
    return flags


def dag_name(args: argparse.Namespace) -> str:
    """The DAG named positionally (what people type) or with --name (the contract)."""
    name = args.name or args.dag
    if not name:
        raise CommandError("a DAG name is needed", f"e.g. ./cli.sh {args.command} {args.action} example_etl")
    return name


def path(value: str | None) -> Path | None:
    return Path(value) if value else None
