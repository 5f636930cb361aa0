"""Print which component's env file (run/env/*.json) holds which generated secret: run as root on a home.

usage: python scripts/secret_table.py HOME
A secret counts as held when its value (or, for the JWT key pair, its private PEM) appears anywhere in the file.
"""
import json
import sys
from pathlib import Path


def main(home: Path) -> None:
    secrets = {}
    for line in (home / "secrets.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, _, v = line.partition("=")
            secrets[k.removeprefix("APACHE_AIRFLOW_").lower()] = v.strip()
    key = home / "run" / "jwt" / "private.pem"
    envs = {p.stem: p.read_text() for p in sorted((home / "run" / "env").glob("*.json"))}
    for p in sorted((home / "run" / "env").glob("*.json")):
        json.loads(p.read_text())
    names = list(envs)
    print("| secret | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for name, value in secrets.items():
        if not value:
            continue
        needle = value
        if name == "jwt_private_key":  # stored as one line of base64 PEM body; match its first 40 chars
            needle = value[:40]
        row = ["x" if needle in envs[c] else "" for c in names]
        print(f"| {name} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
