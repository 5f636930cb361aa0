"""Component launcher: clear what an earlier instance of this component left behind, then exec it.

When a component's main process is SIGKILLed, its children (the scheduler's
health server, a worker's log server, uvicorn workers, PostgreSQL backends)
outlive it and hold its ports, so the copy supervisord restarts cannot bind
them. Every process of a component carries APACHE_AIRFLOW_COMPONENT in its
environment; before exec, anything still carrying this component's tag is a
leftover and is killed. Standalone on purpose (copied to <home>/run/launch.py
and run by the venv's Python as the service user): imports only the stdlib.

The component's environment (secrets included) comes from the JSON file named
by APACHE_AIRFLOW_ENV_FILE, so no secret sits in supervisord.conf or on a command line.

usage: python launch.py -- COMMAND [ARG...]
"""

import json
import os
import signal
import sys
import time

TAG_ENV = "APACHE_AIRFLOW_COMPONENT"
ENV_FILE_ENV = "APACHE_AIRFLOW_ENV_FILE"  # JSON object: the component's environment (0600, holds secrets)
HOME_ENV = "APACHE_AIRFLOW_RESOURCE_HOME"
GONE_WAIT_S = 5.0


def leftovers(tag: bytes, home: bytes) -> list[int]:
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        if tag in env and home in env:
            found.append(int(entry))
    return found


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print("usage: launch.py -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    command = argv[argv.index("--") + 1:]
    env_file = os.environ.pop(ENV_FILE_ENV, None)
    if env_file:
        with open(env_file) as f:
            os.environ.update(json.load(f))  # wins over what supervisord inherited from the caller's shell
    name, home = os.environ.get(TAG_ENV), os.environ.get(HOME_ENV)
    if name and home:
        tag, home_b = f"{TAG_ENV}={name}".encode(), f"{HOME_ENV}={home}".encode()
        stale = leftovers(tag, home_b)
        if stale:
            print(f"launch: killing {len(stale)} leftover process(es) of {name}: {stale}", file=sys.stderr, flush=True)
            for pid in stale:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            deadline = time.monotonic() + GONE_WAIT_S
            while leftovers(tag, home_b) and time.monotonic() < deadline:
                time.sleep(0.05)
    os.execvp(command[0], command)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
