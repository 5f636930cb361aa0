"""The one password policy: every password the resource accepts (a user's, an APACHE_AIRFLOW_ADMIN_PASSWORD
override) passes `check` here; generated ones pass by construction (secrets.py, tests/unit/test_passwords.py).

Deliberately small and explainable: long enough, not a well-known password or a well-known word with
digits around it, not the user's name, not one character repeated.
"""

from __future__ import annotations

import re

from airflow_resource.errors import CommandError

MIN_LENGTH = 12
MAX_LENGTH = 256  # FAB hashes any length; a longer "password" is a wrong file passed by mistake
MIN_DISTINCT = 6

# Well-known passwords at least MIN_LENGTH long (shorter ones fail on length alone), lower case.
COMMON = frozenset({
    "123456789012", "1234567890123", "12345678901234", "123456789123", "123123123123", "111111111111",
    "000000000000", "123456123456", "qwertyuiop12", "qwertyuiop123", "qwerty123456", "1q2w3e4r5t6y",
    "1qaz2wsx3edc", "zaq12wsxcde3", "asdfghjkl123", "q1w2e3r4t5y6", "abcdefghijkl", "abc123abc123",
    "passwordpassword", "password1234", "password12345", "iloveyou1234", "welcome12345", "changeme1234",
    "letmein12345", "adminadmin12", "administrator", "administrator1", "airflowairflow", "apacheairflow",
    "correcthorsebatterystaple", "trustno1trustno1", "princess1234", "football1234", "sunshine1234",
})
# Well-known words: a password that is one of these with only digits and symbols around it is refused
# ("Password2024!", "!!airflow1234").
COMMON_WORDS = frozenset({
    "password", "passw0rd", "pa55word", "qwerty", "qwertyuiop", "asdfgh", "asdfghjkl", "zxcvbnm", "admin",
    "administrator", "airflow", "apache", "apacheairflow", "airflowadmin", "adminadmin", "root", "toor",
    "letmein", "welcome", "iloveyou", "changeme", "secret", "default", "login", "guest", "test", "testing",
    "monkey", "dragon", "football", "baseball", "sunshine", "princess", "master", "trustno", "superuser",
    "user", "abc", "abcdef", "abcdefgh", "abcdefghijkl", "summer", "winter", "spring", "autumn", "hello",
})
_CORE = re.compile(r"^[^a-z]*([a-z0-9]*[a-z])[^a-z]*$")


def problems(password: str, username: str | None = None) -> list[str]:
    """What makes the password too weak, in words a user can act on; empty when it is acceptable."""
    found = []
    if len(password) < MIN_LENGTH:
        found.append(f"it has {len(password)} characters; at least {MIN_LENGTH} are needed")
    if len(password) > MAX_LENGTH:
        found.append(f"it has {len(password)} characters; at most {MAX_LENGTH} are taken")
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        found.append("it holds a control character (a line break in a password file?)")
    lower = password.lower()
    core = _CORE.match(lower)
    if lower in COMMON or (core and core.group(1) in COMMON_WORDS):
        found.append("it is a well-known password (or a well-known word with digits and symbols around it)")
    if len(set(password)) < MIN_DISTINCT:
        found.append(f"it has fewer than {MIN_DISTINCT} different characters")
    if username and len(username) >= 3 and username.lower() in lower:
        found.append("it contains the user name")
    return found


def check(password: str, username: str | None = None, what: str = "the password") -> None:
    """Raise a CommandError naming every rule the password breaks (never the password itself)."""
    found = problems(password, username)
    if found:
        raise CommandError(f"{what} is too weak: {'; '.join(found)}",
                           f"choose at least {MIN_LENGTH} characters, not a common password and not the user "
                           "name; e.g. a few unrelated words, or a password manager's")
