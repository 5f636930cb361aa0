"""launch.py, run for real: the env file reaches the component, leftovers of the same component are killed, then exec.

Every process started here is killed and reaped by the `procs` fixture, even when a test fails.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_resource.config import airflow_config
from airflow_resource.stack import components
from airflow_resource.standalone import launch
from airflow_resource.stack import supervisor
from airflow_resource.standalone.launch import ENV_FILE_ENV, HOME_ENV, TAG_ENV

pytestmark = pytest.mark.unit

LAUNCH = Path(launch.__file__).resolve()
PRINT_ENV = "import os, json; print(json.dumps({**os.environ, '__pid__': str(os.getpid())}))"
SLEEP = shutil.which("sleep") or "/bin/sleep"
TIMEOUT_S = 20


def clean_env(**extra: str) -> dict[str, str]:
    """A minimal inherited environment: nothing from the test runner leaks into what the child prints."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **extra}


def run_launch(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(LAUNCH), *args], env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)


def write_env_file(path: Path, env: dict[str, str]) -> Path:
    path.write_text(json.dumps(env, indent=1))
    path.chmod(0o600)
    return path


def launch_and_print_env(env_file: Path | None, **inherited: str) -> tuple[dict[str, str], subprocess.CompletedProcess]:
    env = clean_env(**inherited)
    if env_file is not None:
        env[ENV_FILE_ENV] = str(env_file)
    p = subprocess.Popen([sys.executable, str(LAUNCH), "--", sys.executable, "-c", PRINT_ENV], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        out, err = p.communicate(timeout=TIMEOUT_S)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    done = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    assert p.returncode == 0, err
    child = json.loads(out)
    # exec, not spawn: the component is the process supervisord started (signals, stopasgroup)
    assert child.pop("__pid__") == str(p.pid)
    return child, done


@pytest.fixture
def procs():
    """Start processes that are always killed and reaped at teardown."""
    started: list[subprocess.Popen] = []

    def start(argv: list[str], env: dict[str, str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
        for stream in (p.stdout, p.stderr):
            if stream:
                stream.close()


def gone(p: subprocess.Popen, within_s: float = 2.0) -> bool:
    try:
        p.wait(timeout=within_s)
        return True
    except subprocess.TimeoutExpired:
        return False


# ---------------------------------------------------------------- environment


def test_env_file_values_arrive_and_win_over_inherited_ones(tmp_path):
    env_file = write_env_file(tmp_path / "c.json", {"FROM_FILE": "yes", "SHARED": "from-file", "EMPTY": ""})
    child, _ = launch_and_print_env(env_file, SHARED="inherited", ONLY_INHERITED="kept")
    assert child["FROM_FILE"] == "yes"
    assert child["SHARED"] == "from-file"
    assert child["EMPTY"] == ""
    assert child["ONLY_INHERITED"] == "kept"
    assert ENV_FILE_ENV not in child


@pytest.mark.parametrize("value", [
    'say "hi"', "it's \"both\"", "pass ;word", "pass #word", "two\nlines", "%(ENV_HOME)s", "a,b=c%d 100%",
    "", "  padded  ", "back\\slash\ttab", "unicode é ü €",
])
def test_awkward_values_reach_the_component_unchanged(tmp_path, value):
    env_file = write_env_file(tmp_path / "c.json", {"TRICKY": value})
    child, _ = launch_and_print_env(env_file, TRICKY="inherited")
    assert child["TRICKY"] == value


def test_component_env_reaches_the_component(make_settings, sec, tmp_path):
    """What the stack writes (component_env as JSON) is exactly what the component sees."""
    s = make_settings(workers=1)
    worker = components.by_name(components.build(s, sec))["worker-1"]
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", HOME_ENV: str(tmp_path / "h")}
    env = supervisor.component_env(worker, base, airflow_config.airflow_env(s, sec))
    env_file = write_env_file(tmp_path / "worker-1.json", env)
    child, _ = launch_and_print_env(env_file, **{TAG_ENV: "worker-1", "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor"})
    assert {k: child.get(k) for k in env} == env
    assert ENV_FILE_ENV not in child


def test_without_env_file_the_inherited_environment_is_passed_on():
    child, _ = launch_and_print_env(None, ONLY_INHERITED="kept")
    assert child["ONLY_INHERITED"] == "kept"


def test_exit_status_is_the_component_s():
    done = run_launch(["--", sys.executable, "-c", "raise SystemExit(7)"], clean_env())
    assert done.returncode == 7


# ---------------------------------------------------------------- usage


@pytest.mark.parametrize("args", [
    [],
    ["--"],
    ["sys.executable", "-c", "open('ran', 'w')"],
    ["sys.executable", "-c", "open('ran', 'w')", "--"],
])
def test_missing_separator_or_command_exits_2(tmp_path, args):
    args = [sys.executable if a == "sys.executable" else a for a in args]
    done = subprocess.run([sys.executable, str(LAUNCH), *args], env=clean_env(), capture_output=True, text=True,
                          timeout=TIMEOUT_S, cwd=tmp_path)
    assert done.returncode == 2
    assert "usage" in done.stderr
    assert not (tmp_path / "ran").exists()


def test_launcher_imports_only_the_standard_library():
    """It is copied to <home>/run/launch.py and run outside the package."""
    tree = ast.parse(LAUNCH.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            imported.add(node.module.split(".")[0])
    assert imported and imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


# ---------------------------------------------------------------- leftovers


def leftover_env(tag: str | None, home: Path | str | None) -> dict[str, str]:
    env = clean_env()
    if tag is not None:
        env[TAG_ENV] = tag
    if home is not None:
        env[HOME_ENV] = str(home)
    return env


def test_leftover_of_the_same_component_and_home_is_killed(tmp_path, procs):
    home = tmp_path / "home"
    other_home = tmp_path / "other"
    same = [procs([SLEEP, "60"], leftover_env("x", home)) for _ in range(2)]
    survivors = {
        "other tag": procs([SLEEP, "60"], leftover_env("y", home)),
        "tag prefix": procs([SLEEP, "60"], leftover_env("x-1", home)),
        "other home": procs([SLEEP, "60"], leftover_env("x", other_home)),
        "home prefix": procs([SLEEP, "60"], leftover_env("x", f"{home}/sub")),
        "no tag": procs([SLEEP, "60"], leftover_env(None, home)),
        "no home": procs([SLEEP, "60"], leftover_env("x", None)),
    }
    env_file = write_env_file(tmp_path / "x.json", {TAG_ENV: "x", HOME_ENV: str(home)})
    child, done = launch_and_print_env(env_file)
    assert child[TAG_ENV] == "x"  # the launched component keeps its tag (and is not killed by itself)
    for p in same:
        assert gone(p), "leftover with the same tag and home still runs"
        assert p.returncode == -signal.SIGKILL
    assert "leftover" in done.stderr
    for what, p in survivors.items():
        assert p.poll() is None, f"process with {what} was killed"


def test_tag_and_home_from_the_inherited_environment_are_enough(tmp_path, procs):
    """supervisord passes the tag itself (environment=) and the home (its own environment)."""
    home = tmp_path / "home"
    leftover = procs([SLEEP, "60"], leftover_env("x", home))
    bystander = procs([SLEEP, "60"], leftover_env("y", home))
    launch_and_print_env(None, **{TAG_ENV: "x", HOME_ENV: str(home)})
    assert gone(leftover)
    assert bystander.poll() is None


def test_nothing_is_killed_without_a_home(tmp_path, procs):
    home = tmp_path / "home"
    p = procs([SLEEP, "60"], leftover_env("x", home))
    env_file = write_env_file(tmp_path / "x.json", {TAG_ENV: "x"})
    launch_and_print_env(env_file)
    assert p.poll() is None


def test_orphan_that_set_its_title_is_killed_through_the_recorded_group(tmp_path):
    """A SIGKILLed component leaves a child that retitled itself (blank environ): the launcher finds it
    through the process group it recorded on the previous launch."""
    check = subprocess.run([sys.executable, "-c", "import setproctitle"], capture_output=True, timeout=TIMEOUT_S)
    assert check.returncode == 0, "setproctitle ships with Airflow's stack"
    run = tmp_path / "run"
    run.mkdir()
    launcher = run / "launch.py"
    launcher.write_text(LAUNCH.read_text())
    home = tmp_path / "home"
    child_code = ("import setproctitle, time; setproctitle.setproctitle('airflow scheduler'); "
                  "print('ready', flush=True); time.sleep(60)")
    # The previous instance: a group leader (as supervisord makes it) recorded by the launcher, with a child.
    leader_code = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', sys.argv[1]]); "
                   "time.sleep(60)")
    env = clean_env(**{TAG_ENV: "x", HOME_ENV: str(home)})
    leader = subprocess.Popen([sys.executable, str(launcher), "--", sys.executable, "-c", leader_code, child_code],
                              env=env, stdout=subprocess.PIPE, text=True, process_group=0, stdin=subprocess.DEVNULL)
    try:
        assert leader.stdout.readline().strip() == "ready"
        assert (run / "pids" / "x").read_text().split()[0] == str(leader.pid)
        leader.kill()
        leader.wait(timeout=TIMEOUT_S)
        members = launch.group_members(*launch.read_record(str(run / "pids" / "x")))
        assert len(members) == 1, "the retitled child outlived its leader"
        orphan = members[0]
        with open(f"/proc/{orphan}/environ", "rb") as f:
            assert b"APACHE_AIRFLOW_COMPONENT" not in f.read()  # the tag alone could not find it
        proc = subprocess.run([sys.executable, str(launcher), "--", "true"], env=env, capture_output=True,
                              text=True, timeout=TIMEOUT_S)
        assert proc.returncode == 0, proc.stderr
        assert f"killing 1 leftover process(es) of x: [{orphan}]" in proc.stderr
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{orphan}") and _state(orphan) != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{orphan}") or _state(orphan) == "Z"
    finally:
        record = launch.read_record(str(run / "pids" / "x"))
        for pid in launch.group_members(*record) if record else []:
            os.kill(pid, signal.SIGKILL)
        if leader.poll() is None:
            leader.kill()
        leader.stdout.close()


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_memfd_vars_hand_file_content_over_as_a_private_fd(tmp_path):
    """A variable named in APACHE_AIRFLOW_MEMFD_VARS holds file content (the JWT private key's PEM): the
    component sees a /proc/self/fd path whose file has that content, and the content is not in its env."""
    pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAw\n-----END PRIVATE KEY-----\n"
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps({"KEYFILE": pem, launch.MEMFD_VARS_ENV: "KEYFILE"}))
    out = tmp_path / "out.json"
    probe = ("import json, os, sys; p = os.environ['KEYFILE']; "
             "json.dump({'path': p, 'content': open(p).read(), 'vars': os.environ.get(sys.argv[2]), "
             "'env': dict(os.environ)}, open(sys.argv[1], 'w'))")
    env = {k: v for k, v in os.environ.items() if k not in (TAG_ENV, HOME_ENV)}
    proc = subprocess.run([sys.executable, str(LAUNCH), "--", sys.executable, "-c", probe, str(out), launch.MEMFD_VARS_ENV],
                          env={**env, ENV_FILE_ENV: str(env_file)}, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(out.read_text())
    assert got["path"].startswith("/proc/self/fd/") and got["content"] == pem
    assert got["vars"] is None and pem not in json.dumps(got["env"])
