"""config/schema.json and config/defaults.sh, generated from the settings table.

Regenerate them after changing settings_table.py: python -m airflow_resource.config.generated
(a unit test checks the files in the repository are what this writes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from airflow_resource.config.settings_table import AIRFLOW_TABLE, SETTINGS


def json_schema() -> dict[str, Any]:
    """JSON Schema of the config file and environment settings (config/schema.json)."""
    props: dict[str, Any] = {}
    for s in SETTINGS:
        p: dict[str, Any] = {"type": "integer" if s.type is int else "string", "description": s.description}
        p["x-env"] = s.env
        if not callable(s.default):
            p["default"] = s.default
        if s.minimum is not None:
            p["minimum"] = s.minimum
        if s.maximum is not None:
            p["maximum"] = s.maximum
        props[s.name] = p
    props[AIRFLOW_TABLE] = {
        "type": "object",
        "description": "Airflow options as [airflow.<section>] tables (key = value), passed to every Airflow "
        "process as AIRFLOW__<SECTION>__<KEY>; options the stack depends on are refused.",
        "additionalProperties": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "apache-airflow resource settings",
        "description": "Keys of resource.toml; each also has an APACHE_AIRFLOW_<KEY> environment variable. "
        "Precedence: defaults < config file < environment < flags.",
        "type": "object",
        "additionalProperties": False,
        "properties": props,
    }


def defaults_sh() -> str:
    """config/defaults.sh: the defaults as shell exports, overridable from the environment."""
    lines = ["#!/usr/bin/env bash", "# Generated from airflow_resource/config/settings_table.py: the resource's defaults.", ""]
    for s in SETTINGS:
        if callable(s.default):
            continue
        lines.append(f'export {s.env}="${{{s.env}:-{s.default}}}"')
    return "\n".join(lines) + "\n"


def write_config_files(config_dir: Path) -> None:
    """Regenerate config/schema.json and config/defaults.sh from SETTINGS."""
    (config_dir / "schema.json").write_text(json.dumps(json_schema(), indent=2) + "\n")
    (config_dir / "defaults.sh").write_text(defaults_sh())


if __name__ == "__main__":
    from airflow_resource.paths import CONFIG_DIR

    write_config_files(CONFIG_DIR)
