"""What each test phase installs before pytest (stack/test_deps.py), with a fake machine and a fake apt-get."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_resource.errors import CommandError
from airflow_resource.stack import system, test_deps

pytestmark = pytest.mark.unit


class Machine:
    """Which binaries exist; apt-get records its commands and, when it succeeds, installs the packages'
    binaries."""

    BINARIES = {"chromium": "/usr/bin/chromium", "prometheus": "prometheus"}

    def __init__(self, *present: str, apt_fails: bool = False, apt_installs: bool = True):
        self.present = set(present)
        self.commands: list[list[str]] = []
        self.apt_fails = apt_fails
        self.apt_installs = apt_installs

    def has(self, binary: str) -> bool:
        return binary in self.present

    def run(self, cmd, **kw):
        self.commands.append(list(cmd))
        failed = self.apt_fails and cmd[:2] == ["apt-get", "install"]
        if cmd[:2] == ["apt-get", "install"] and not failed and self.apt_installs:
            self.present |= {self.BINARIES[p] for p in cmd if p in self.BINARIES}
        return type("Done", (), {"returncode": 1 if failed else 0, "stderr": "E: boom" if failed else "",
                                 "stdout": ""})()


@pytest.fixture
def machine(monkeypatch):
    def make(*present: str, root: bool = True, **kw) -> Machine:
        m = Machine(*present, **kw)
        monkeypatch.setattr(system.subprocess, "run", m.run)
        monkeypatch.setattr(system, "is_root", lambda: root)
        monkeypatch.setattr(system.shutil, "which", lambda name: f"/usr/bin/{name}" if name == "apt-get" else None)
        return m
    return make


def ensure(m: Machine, phase: str, environ: dict[str, str] | None = None) -> list[str]:
    return test_deps.ensure(phase, environ={} if environ is None else environ, is_present=m.has)


@pytest.mark.parametrize("phase, packages", [
    ("unit", []), ("smoke", []), ("integration", ["prometheus"]), ("e2e", ["chromium"]),
    ("all", ["prometheus", "chromium"]), ("long", ["chromium"]), ("--all", ["prometheus", "chromium"]),
])
def test_each_phase_needs_its_packages(phase, packages):
    assert [n.package for n in test_deps.missing(phase, {}, lambda b: False)] == packages


def test_every_phase_of_the_runner_has_an_entry():
    text = (Path(__file__).resolve().parents[2] / "test" / "run-tests.sh").read_text()
    for phase in test_deps.PHASES:
        assert f"--{phase}|{phase})" in text, phase


def test_root_installs_what_is_missing_after_an_update(machine):
    m = machine()
    assert ensure(m, "all") == ["prometheus", "chromium"]
    assert m.commands[0] == ["apt-get", "update", "-qq"]
    assert m.commands[1][:2] == ["apt-get", "install"] and m.commands[1][-2:] == ["prometheus", "chromium"]


def test_only_what_is_missing_is_installed(machine):
    m = machine("prometheus")
    assert ensure(m, "all") == ["chromium"]
    assert m.commands[-1][-1] == "chromium" and "prometheus" not in m.commands[-1]


def test_nothing_missing_runs_nothing(machine):
    m = machine("prometheus", "/usr/bin/chromium")
    assert ensure(m, "all") == []
    assert ensure(m, "unit") == []
    assert m.commands == []


def test_a_phase_that_needs_nothing_installs_nothing_on_a_bare_machine(machine):
    m = machine(root=False)
    assert ensure(m, "unit") == [] and ensure(m, "smoke") == []
    assert m.commands == []


def test_without_root_the_error_names_the_packages_to_install(machine):
    m = machine(root=False)
    with pytest.raises(CommandError) as exc:
        ensure(m, "e2e")
    assert exc.value.exit_code == 1
    assert "chromium" in exc.value.message and "apt-get install -y chromium" in exc.value.hint
    assert m.commands == []


def test_chromium_elsewhere_is_used_where_the_e2e_tests_look_for_it(machine):
    m = machine("/opt/chrome/chrome", root=False)
    assert ensure(m, "e2e", {test_deps.CHROMIUM_ENV: "/opt/chrome/chrome"}) == []


def test_a_failed_apt_get_is_an_error_with_its_output(machine):
    m = machine(apt_fails=True)
    with pytest.raises(CommandError) as exc:
        ensure(m, "integration")
    assert "apt-get install prometheus failed" in exc.value.message and "E: boom" in exc.value.message


def test_installed_but_still_missing_is_an_error(machine):
    m = machine(apt_installs=False)
    with pytest.raises(CommandError) as exc:
        ensure(m, "e2e")
    assert "/usr/bin/chromium is still missing" in exc.value.message


def test_unknown_phase_is_refused():
    with pytest.raises(CommandError) as exc:
        test_deps.missing("nightly")
    assert "unknown test phase 'nightly'" in exc.value.message


def test_main_prints_the_error_and_exits_1(machine, capsys):
    machine(root=False)
    # the real check of the binaries: none of these names exist on PATH (which is faked to find nothing)
    assert test_deps.main(["--phase=--integration"]) == 1
    assert "prometheus" in capsys.readouterr().err
    assert test_deps.main(["--phase", "unit"]) == 0
