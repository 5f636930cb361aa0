"""Supply chain: every lock is hashed and installed with --require-hashes; a file whose hash differs is
refused (real pip, offline, on a wheel built here); test tooling stays out of every runtime lock."""

from __future__ import annotations

import base64
import hashlib
import re
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from airflow_resource.config import pinned_sets
from airflow_resource.config.venv import runtime_venv
from airflow_resource.errors import CommandError
from airflow_resource.stack import installer

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "constraints"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def entries(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes) of a pip-compile lock (an entry's options continue its line)."""
    text = re.sub(r"\\\n\s*", " ", lock.read_text())
    found = {}
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        m = PIN.match(line)
        assert m, f"{lock.name}: not a pinned entry: {line[:80]}"
        found[m.group(1).lower().replace("_", "-")] = (m.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
    return found


def runtime_locks() -> list[Path]:
    return [lock for s in pinned_sets.all_sets() for lock in sorted(s.folder.glob("lock-py*.txt"))]


def all_locks() -> list[Path]:
    return runtime_locks() + sorted(CONSTRAINTS.glob("cli-lock-py*.txt")) + sorted(CONSTRAINTS.glob("test-lock-py*.txt"))


def test_every_entry_of_every_lock_is_pinned_and_hashed():
    locks = all_locks()
    assert len(runtime_locks()) >= 3 and len(locks) >= 5, locks
    for lock in locks:
        found = entries(lock)
        assert found, lock
        unhashed = [name for name, (_, hashes) in found.items() if not hashes]
        assert not unhashed, f"{lock.relative_to(REPO)}: no hash for {unhashed}"


def test_the_build_backend_is_locked_so_our_package_installs_without_build_isolation():
    build = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    names = {re.split(r"[<>=!~ ]", r, maxsplit=1)[0].lower() for r in build}
    for lock in runtime_locks() + sorted(CONSTRAINTS.glob("cli-lock-py*.txt")):
        assert names <= set(entries(lock)), f"{lock.relative_to(REPO)} lacks {names - set(entries(lock))}"


def test_no_runtime_lock_holds_test_tooling():
    runtime = entries(CONSTRAINTS / "lock-py3.11.txt")
    test_only = set(entries(CONSTRAINTS / "test-lock-py3.11.txt")) - set(runtime)
    assert {"pytest", "playwright"} <= test_only, test_only
    for lock in runtime_locks() + sorted(CONSTRAINTS.glob("cli-lock-py*.txt")):
        assert not test_only & set(entries(lock)), f"{lock.relative_to(REPO)} pins {test_only & set(entries(lock))}"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "optional-dependencies" not in project  # no extra that would put test tooling into the runtime venv


def test_the_cli_and_test_locks_agree_with_the_runtime_lock():
    """scripts/venv.sh installs the CLI lock, `manage install` the runtime lock into the same venv; the test
    venv sees the runtime venv's packages: a version shared by two locks must be the same in both."""
    runtime = entries(CONSTRAINTS / "lock-py3.11.txt")
    for name in ("cli-lock-py3.11.txt", "test-lock-py3.11.txt"):
        other = entries(CONSTRAINTS / name)
        differ = {n: (v, runtime[n][0]) for n, (v, _) in other.items() if n in runtime and runtime[n][0] != v}
        assert not differ, f"{name}: {differ}"
    cli = entries(CONSTRAINTS / "cli-lock-py3.11.txt")
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert {re.split(r"[<>=!~ ]", d, maxsplit=1)[0].lower() for d in deps} <= set(cli)


def test_every_install_requires_hashes():
    args = installer.lock_install_args(Path("/x/lock.txt"))
    assert "--require-hashes" in args and "--no-deps" in args and args[args.index("--only-binary") + 1] == ":all:"
    for script in ("scripts/venv.sh", "scripts/test-venv.sh"):
        text = (REPO / script).read_text()
        assert "--require-hashes --no-deps" in text and "--only-binary :all:" in text, script


# ---------------------------------------------------------------- real pip, offline

def build_wheel(folder: Path, name: str, version: str, body: str) -> Path:
    dist = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": body,
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(content.encode())}")
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, content in files.items():
            z.writestr(path, content)
    return wheel


def install(tmp_path: Path, lock: Path, target: Path) -> None:
    """installer's own pip call with the lock's arguments, offline into a folder."""
    extra = ["--no-index", "--find-links", str(tmp_path / "wheels"), "--target", str(target), "--upgrade"]
    installer._pip(Path(sys.executable), installer.lock_install_args(lock) + extra, lock)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_lock_entry_whose_hash_does_not_match_is_refused_and_nothing_is_lost(tmp_path):
    (tmp_path / "wheels").mkdir()
    target = tmp_path / "site"
    good = build_wheel(tmp_path / "wheels", "supplyprobe", "1.0", "VERSION = 1\n")
    lock = tmp_path / "lock.txt"
    lock.write_text(f"supplyprobe==1.0 --hash=sha256:{sha256(good)}\n")
    install(tmp_path, lock, target)  # the right hash installs: the refusal below is the hash's doing
    assert (target / "supplyprobe" / "__init__.py").read_text() == "VERSION = 1\n"

    served = build_wheel(tmp_path / "wheels", "supplyprobe", "2.0", "VERSION = 'tampered'\n")
    lock.write_text(f"supplyprobe==2.0 --hash=sha256:{'0' * 64}\n")  # the lock pins another file's hash
    with pytest.raises(CommandError) as exc:
        install(tmp_path, lock, target)
    assert "supplyprobe==2.0" in exc.value.message and "sha256" in exc.value.message
    assert sha256(served) in exc.value.message  # pip's report of what it got is shown
    assert "scripts/lock.sh" in exc.value.hint and "do not install it" in exc.value.hint
    assert (target / "supplyprobe" / "__init__.py").read_text() == "VERSION = 1\n"


def test_an_unhashed_entry_is_refused(tmp_path):
    (tmp_path / "wheels").mkdir()
    build_wheel(tmp_path / "wheels", "supplyprobe", "1.0", "VERSION = 1\n")
    lock = tmp_path / "lock.txt"
    lock.write_text("supplyprobe==1.0\n")
    with pytest.raises(CommandError) as exc:
        install(tmp_path, lock, tmp_path / "site")
    assert "supplyprobe" in exc.value.message and "hash" in exc.value.message.lower()
    assert not (tmp_path / "site" / "supplyprobe").exists()


def test_another_pip_failure_is_not_called_a_hash_mismatch():
    assert installer.hash_refusal(["ERROR: No matching distribution found for x==1"], None) is None


def test_the_runtime_venv_holds_airflow():
    """Run from the test venv, the stacks the tests start still get the venv that holds Airflow."""
    venv = runtime_venv()
    assert (venv / "bin" / "python").exists()
    assert list(venv.glob("lib/python3*/site-packages/airflow/__init__.py")), venv
