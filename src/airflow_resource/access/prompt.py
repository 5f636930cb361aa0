"""A password from a prompt (asked twice), a file or stdin: never from the command line, where `ps` and the
shell's history would show it. Checked against the one policy (config/passwords.py)."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from airflow_resource.config import passwords
from airflow_resource.errors import CommandError

MAX_BYTES = 4096


def _one_line(text: str, where: str) -> str:
    # One trailing line break is what `echo` and editors add; anything else is part of the password.
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise CommandError(f"{where} holds no password", "put the password on its first line")
    return text


def read(username: str, password_file: str | None, from_stdin: bool) -> str:
    """The new password of `username`, read and checked; refused before anything is changed."""
    if password_file and from_stdin:
        raise CommandError("--password-file and --password-stdin exclude each other", "pass one of them")
    if password_file:
        path = Path(password_file)
        try:
            with path.open("rb") as f:
                data = f.read(MAX_BYTES + 1)
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}", "pass a readable file") from None
        if len(data) > MAX_BYTES:
            raise CommandError(f"{path} is larger than {MAX_BYTES} bytes: not a password file",
                               "put only the password in it")
        password = _one_line(data.decode("utf-8", errors="replace"), str(path))
    elif from_stdin:
        password = _one_line(sys.stdin.read(MAX_BYTES + 1), "standard input")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"new password for {username}: ")
        passwords.check(password, username)  # before asking again
        if getpass.getpass("again: ") != password:
            raise CommandError("the two passwords differ", "run the command again")
    else:
        raise CommandError("no password given and no terminal to ask on",
                           "pass --password-file FILE or --password-stdin")
    passwords.check(password, username)
    return password
