"""The machine checks: missing binaries, ports, reachability of the home."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from airflow_resource.stack import system
from airflow_resource.errors import CommandError

pytestmark = pytest.mark.unit


def test_missing_binaries_are_named(monkeypatch):
    monkeypatch.setattr(system, "pg_bindir", lambda: None)
    monkeypatch.setattr(system, "redis_server", lambda: None)
    assert system.missing_packages(True, True) == ["postgresql", "redis-server"]
    assert system.missing_packages(False, False) == []


def test_missing_packages_without_root_say_what_to_install(monkeypatch):
    monkeypatch.setattr(system, "is_root", lambda: False)
    with pytest.raises(CommandError) as exc:
        system.install_packages(["postgresql", "redis-server"])
    assert "missing system packages: postgresql, redis-server" in exc.value.message
    assert "apt-get install -y postgresql redis-server" in exc.value.hint


def test_nothing_missing_installs_nothing(monkeypatch):
    monkeypatch.setattr(system.subprocess, "run", lambda *a, **k: pytest.fail("ran a command"))
    system.install_packages([])


def test_pg_bindir_prefers_the_newest_debian_version(tmp_path, monkeypatch):
    for version in ("13", "15", "9.6"):
        bindir = tmp_path / version / "bin"
        bindir.mkdir(parents=True)
        for name in ("initdb", "postgres"):
            (bindir / name).write_text("#!/bin/sh\n")
            (bindir / name).chmod(0o755)
    monkeypatch.setattr(system, "PG_BIN_GLOB", str(tmp_path / "*" / "bin"))
    assert system.pg_bindir() == tmp_path / "15" / "bin"


def test_port_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert system.port_in_use(port)
    assert not system.port_in_use(port)


def test_home_under_a_closed_directory_is_refused_for_the_service_user(tmp_path):
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    other = system.RunAs("svc", 65534, 65534, "/nonexistent")
    with pytest.raises(CommandError) as exc:
        system.check_traversable(closed / "home", other)
    assert "cannot reach" in exc.value.message and str(closed) in exc.value.message


def test_the_caller_needs_no_traversal_check(tmp_path):
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    system.check_traversable(closed / "home", system.current_user())
