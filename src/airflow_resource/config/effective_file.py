"""The running stack's settings file (run/effective.json): what `manage start` resolved, which status, logs,
stop and scale read back, so they see the ports and workers the stack really has. Root's, 0600.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from airflow_resource import safe_files
from airflow_resource.config.settings_table import BY_NAME, coerce
from airflow_resource.errors import CommandError

EFFECTIVE_FILE = "run/effective.json"  # settings of the stack that is running (root's, 0600)


def load(home: Path) -> dict[str, Any] | None:
    """Settings the running stack was started with, so status/logs see the real ports; None when there
    is no such file. A damaged one is an error: guessing the ports from today's settings would probe,
    stop or scale the wrong processes. Under root, a file another user can write (or a link) is refused:
    it would name the venv, users and folders the next root command works with."""
    path = home / EFFECTIVE_FILE
    try:
        if os.geteuid() == 0:
            fd = safe_files.open_dir(path.parent)
            try:
                st = os.stat(path.name, dir_fd=fd, follow_symlinks=False)
            finally:
                os.close(fd)
            if st.st_uid != 0 or st.st_mode & 0o022 or not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                raise CommandError(
                    f"the running stack's settings file {path} is not a plain file only root can write (owner uid "
                    f"{st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}): root takes no settings from a file "
                    "another user can write", f"remove it (rm {path}); `./cli.sh manage stop --force` then "
                    "`./cli.sh manage start` write it anew")
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise _damaged(path, str(exc)) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        line = f":{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise _damaged(path, str(exc), line) from None
    if not isinstance(data, dict):
        raise _damaged(path, f"a JSON object was expected, found {type(data).__name__}")
    for name, value in data.items():
        if name in BY_NAME and name != "home":
            try:
                coerce(BY_NAME[name], value, "")  # a wrong type is damage too
            except CommandError:
                raise _damaged(path, f"{name} is {value!r}") from None
    return data


def _damaged(path: Path, why: str, line: str = "") -> CommandError:
    return CommandError(
        f"the running stack's settings file {path}{line} is damaged ({why}); its ports and workers are unknown",
        "`./cli.sh manage stop` stops the stack without it (and removes it); "
        "`./cli.sh manage start` then writes it anew")
