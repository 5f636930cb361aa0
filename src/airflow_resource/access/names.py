"""Which names users, roles and teams may have: no shell or SQL metacharacters, no spaces, no path
separators (a team's name is a folder and part of a role's name). Refused with the allowed characters."""

from __future__ import annotations

import re

from airflow_resource.errors import CommandError

MAX_LENGTH = 64
TEAM_MAX_LENGTH = 32
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")
_ROLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_TEAM = re.compile(r"[a-z][a-z0-9_-]*")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+")

ALLOWED = {
    "user": f"letters, digits, '.', '_', '-' and '@', starting with a letter or digit, at most {MAX_LENGTH}",
    "role": f"letters, digits, '.', '_' and '-', starting with a letter or digit, at most {MAX_LENGTH}",
    "team": f"lower-case letters, digits, '_' and '-', starting with a letter, at most {TEAM_MAX_LENGTH}",
}


def _check(kind: str, value: str, pattern: re.Pattern[str], limit: int) -> str:
    if not pattern.fullmatch(value) or len(value) > limit:
        raise CommandError(f"{kind} name {value!r} is not allowed",
                           f"{kind} names may hold {ALLOWED[kind]} characters")
    return value


def user(value: str) -> str:
    return _check("user", value, _USER, MAX_LENGTH)


def role(value: str) -> str:
    return _check("role", value, _ROLE, MAX_LENGTH)


def team(value: str) -> str:
    return _check("team", value, _TEAM, TEAM_MAX_LENGTH)


def email(value: str) -> str:
    if not _EMAIL.fullmatch(value) or len(value) > 254:
        raise CommandError(f"e-mail address {value!r} is not allowed",
                           "e.g. --email jane@example.org (letters, digits and . _ % + - around one @)")
    return value


def display(value: str, what: str) -> str:
    """A first or last name: any printable text, no control characters."""
    if not value.strip() or len(value) > MAX_LENGTH or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise CommandError(f"{what} {value!r} is not allowed", f"printable text, 1 to {MAX_LENGTH} characters")
    return value
