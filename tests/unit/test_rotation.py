"""credentials rotate: names, who holds what, the plan file, the JWKS with retired keys, and the order of the
steps (stores and restarts mocked: the real ones are in tests/integration/test_rotation.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import time

import pytest

from airflow_resource.config import jwks_trust
from airflow_resource.config import secrets as secrets_mod
from airflow_resource.config.secrets import Secrets
from airflow_resource.errors import CommandError
from airflow_resource.stack import components, rotation, supervisor
from airflow_resource.stack import rotation_plan as plans
from airflow_resource.config import airflow_config

pytestmark = pytest.mark.unit


# ---------------------------------------------------------------- names


def test_names_are_checked():
    with pytest.raises(CommandError, match="unknown secret"):
        plans.parse_names(["redis", "nosuch"], False, True, True)
    with pytest.raises(CommandError, match="not both"):
        plans.parse_names(["redis"], True, True, True)
    with pytest.raises(CommandError, match="none named"):
        plans.parse_names([], False, True, True)
    assert plans.parse_names(["fernet", "admin"], False, True, True) == ["admin", "fernet"]  # the rotation's order
    assert plans.parse_names([], True, True, True) == list(plans.NAMES)


def test_external_data_stores_are_not_rotated_here():
    assert "postgres" not in plans.parse_names([], True, False, True)
    assert "redis" not in plans.parse_names([], True, True, False)
    with pytest.raises(CommandError, match="not embedded"):
        plans.parse_names(["postgres"], False, False, True)


def test_the_cli_table_lists_the_same_names():
    from airflow_resource.cli import table

    assert table.ROTATABLE == plans.NAMES


def test_a_secret_set_in_the_environment_is_named():
    assert plans.env_overridden(["redis", "admin"], {"APACHE_AIRFLOW_ADMIN_PASSWORD": "x"}) == \
        ["APACHE_AIRFLOW_ADMIN_PASSWORD"]
    assert plans.env_overridden(["redis"], {"APACHE_AIRFLOW_ADMIN_PASSWORD": "x"}) == []


# ---------------------------------------------------------------- who holds what


def _envs(s, sec):
    comps = components.build(s, sec)
    base = {"PATH": "/bin"}
    full = airflow_config.airflow_env(s, sec)
    return {c.name: supervisor.component_env(c, base, full) for c in comps}, comps


@pytest.mark.parametrize("name", plans.NAMES)
def test_every_component_whose_environment_holds_the_secret_is_restarted(make_settings, sec, name):
    """Derived from the component table the other way round: render every env file with the old and the new
    secret; each component whose env changed (beyond the JWT key id every verifier reads) is a holder."""
    s = dataclasses.replace(make_settings(), backup_interval_minutes=60)
    before, comps = _envs(s, sec)
    new = dataclasses.replace(sec, **plans.generate([name]))
    after, _ = _envs(s, new)
    changed = {n for n in before if {k for k in before[n] if before[n][k] != after[n].get(k)}
               - {"AIRFLOW__API_AUTH__JWT_KID"}}
    holders = {c.name for c in plans.holders(comps, [name])}
    assert changed <= holders
    assert "backup" in holders  # it carries the whole secrets.env
    assert not {"postgres", "redis", "housekeeper"} & holders  # they hold none of these in their env


def test_holders_by_name(make_settings, sec):
    comps = components.build(make_settings(), sec)
    names = {n: [c.name for c in plans.holders(comps, [n])] for n in plans.NAMES}
    assert names["admin"] == []
    assert names["flower"] == ["flower"]
    assert names["jwt"] == ["api-server", "scheduler"]
    assert names["api-secret-key"] == ["api-server"]
    assert set(names["postgres"]) == set(names["fernet"]) == {"api-server", "scheduler", "dag-processor", "triggerer"}
    assert set(names["redis"]) == {"metrics", "api-server", "scheduler", "worker-1", "flower"}  # api-server: login counters


# ---------------------------------------------------------------- the plan


def test_plan_is_private_resumable_and_keeps_its_values(home, sec):
    plan = plans.new_plan(home, ["redis", "fernet"], sec, 600)
    path = plans.plan_path(home)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert plan.old == {"redis_password": sec.redis_password, "fernet_key": sec.fernet_key}
    assert plan.new["redis_password"] != sec.redis_password
    again = plans.load_plan(home)
    assert again.resumed and again.new == plan.new and again.old == plan.old and again.jwt_grace_s == 600
    both = again.secrets(sec, fernet_both=True)
    assert both.fernet_key == f"{plan.new['fernet_key']},{sec.fernet_key}"
    assert again.secrets(sec, fernet_both=False).fernet_key == plan.new["fernet_key"]
    assert both.admin_password == sec.admin_password
    plans.drop_plan(home)
    assert plans.load_plan(home) is None


def test_a_damaged_plan_is_refused_not_regenerated(home):
    plans.plan_path(home).write_text("{not json")
    os.chmod(plans.plan_path(home), 0o600)
    with pytest.raises(CommandError, match="damaged"):
        plans.load_plan(home)


def test_secrets_file_rewritten_with_only_the_new_values(home, sec):
    path = home / "secrets.env"
    secrets_mod.write_private(path, secrets_mod.render_env_file(sec))
    plans.write_secrets(path, plans.stored_secrets(path), {"flower_password": "new-flower"})
    got = secrets_mod.load(path, environ={})
    assert got == dataclasses.replace(sec, flower_password="new-flower")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_effective_takes_the_environment_over_the_file(sec):
    eff = plans.effective(sec, {"APACHE_AIRFLOW_REDIS_PASSWORD": "from-env"})
    assert eff.redis_password == "from-env" and eff.admin_password == sec.admin_password


# ---------------------------------------------------------------- the JWKS


def _key() -> str:
    return secrets_mod.GENERATORS["jwt_private_key"]()


def test_retired_key_trusted_until_its_grace_then_dropped(tmp_path):
    old, new = _key(), _key()
    jwks = tmp_path / "jwks.json"
    jwks_trust.retire(tmp_path, old, not_after=1000.0)
    jwks_trust.retire(tmp_path, old, not_after=2000.0)  # again: one entry, the later time
    assert [r["not_after"] for r in jwks_trust.load_retired(tmp_path)] == [2000.0]
    jwks_trust.write(jwks, new, now=1500.0)
    keys = json.loads(jwks.read_text())["keys"]
    assert [k["kid"] for k in keys] == [jwks_trust.public_jwk(new)["kid"], jwks_trust.public_jwk(old)["kid"]]
    assert all("d" not in k for k in keys)  # public halves only
    jwks_trust.write(jwks, new, now=2500.0)
    assert jwks_trust.trusted_kids(jwks) == [jwks_trust.public_jwk(new)["kid"]]
    assert jwks_trust.load_retired(tmp_path) == []


def test_grace_is_the_longest_token_lifetime():
    assert jwks_trust.token_lifetime({}) == 86400 + jwks_trust.LEEWAY_S
    assert jwks_trust.token_lifetime({"AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME": "3600"}) == 3600 + jwks_trust.LEEWAY_S
    assert jwks_trust.token_lifetime({"AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME": "60",
                                      "AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME": "600"}) == 600 + jwks_trust.LEEWAY_S


# ---------------------------------------------------------------- the order of the steps


@pytest.fixture
def wired(monkeypatch, make_settings, sec, clean_environ):
    """A 'running' stack in a temp home whose stores and restarts record what they were asked."""
    s = make_settings()
    s.run_dir.mkdir(parents=True)
    secrets_mod.write_private(s.secrets_file, secrets_mod.render_env_file(sec))
    calls: list[tuple] = []
    monkeypatch.setattr(rotation.handle, "is_running", lambda _s: True)
    monkeypatch.setattr(rotation.system, "pg_bindir", lambda: None)
    monkeypatch.setattr(rotation.system, "redis_server", lambda: None)
    monkeypatch.setattr(rotation.system, "run_as", lambda _u: None)
    monkeypatch.setattr(rotation.startup, "write_configs", lambda st: calls.append(("configs", st.sec.fernet_key)))
    for name in ("redis_accept_both", "redis_only_new"):
        monkeypatch.setattr(rotation.stores, name, lambda st, old, new, n=name: calls.append((n, old, new)))
    monkeypatch.setattr(rotation.stores, "set_postgres_passwords",
                        lambda st, old, new: calls.append(("postgres", new.postgres_password)))
    monkeypatch.setattr(rotation.stores, "set_admin_and_data_connection",
                        lambda st, data: calls.append(("admin", st.sec.admin_password, data)))
    monkeypatch.setattr(rotation.stores, "reencrypt_fernet", lambda st: calls.append(("reencrypt", st.sec.fernet_key)))

    def restart(st, comps, timeout, drain, while_stopped=None):
        calls.append(("stop", tuple(c.name for c in comps)))
        if while_stopped:
            while_stopped()
        calls.append(("start", tuple(c.name for c in comps)))
        return [c.name for c in comps]

    monkeypatch.setattr(rotation, "restart", restart)
    return s, sec, calls


def test_all_in_order_with_the_old_values_valid_until_the_holders_restart(wired):
    s, sec, calls = wired
    result = rotation.rotate(s, [], True, 60, jwt_grace=300)
    new = secrets_mod.load(s.secrets_file, environ={})
    admin = [c for c in calls if c[0] == "admin"]
    calls = [c for c in calls if c[0] != "admin"]  # the admin's one-off runs beside the restart
    kinds = [c[0] for c in calls]
    assert kinds == ["redis_accept_both", "stop", "postgres", "configs", "start", "redis_only_new",
                     "reencrypt", "stop", "configs", "start"]
    assert admin == [("admin", new.admin_password, True)]
    assert calls[0] == ("redis_accept_both", sec.redis_password, new.redis_password)
    assert calls[2] == ("postgres", new.postgres_password)
    assert calls[3] == ("configs", f"{new.fernet_key},{sec.fernet_key}")  # both keys while re-encrypting
    assert calls[6] == ("reencrypt", f"{new.fernet_key},{sec.fernet_key}")
    assert calls[8] == ("configs", new.fernet_key)
    assert calls[7][1] == ("api-server", "scheduler", "dag-processor", "triggerer")
    for f in dataclasses.fields(Secrets):
        changed = getattr(new, f.name) != getattr(sec, f.name)
        assert changed == (f.name not in ("jwt_secret", "housekeeper_password")), f.name
    assert result["ok"] and not plans.plan_path(s.home).exists()
    assert result["jwt_old_key_trusted_until"]
    kids = jwks_trust.trusted_kids(airflow_config.jwks_file(s))
    assert kids == [jwks_trust.public_jwk(new.jwt_private_key)["kid"], jwks_trust.public_jwk(sec.jwt_private_key)["kid"]]
    text = json.dumps(result)
    for f in dataclasses.fields(Secrets):
        assert getattr(sec, f.name) not in text and getattr(new, f.name) not in text, f.name


def test_only_what_is_named_changes(wired):
    s, sec, calls = wired
    rotation.rotate(s, ["flower"], False, 60)
    new = secrets_mod.load(s.secrets_file, environ={})
    assert dataclasses.replace(new, flower_password=sec.flower_password) == sec
    assert [c for c in calls if c[0] in ("stop", "start")] == [("stop", ("flower",)), ("start", ("flower",))]
    assert not [c for c in calls if c[0] in ("postgres", "admin", "reencrypt", "redis_accept_both")]


def test_a_failure_part_way_says_what_is_done_and_a_rerun_finishes_with_the_same_values(wired, monkeypatch):
    s, sec, calls = wired

    def broken(st, old, new):
        raise CommandError("Redis is down")

    monkeypatch.setattr(rotation.stores, "redis_only_new", broken)
    with pytest.raises(rotation.RotationFailed) as failed:
        rotation.rotate(s, ["redis", "postgres"], False, 60)
    err = failed.value
    assert "Redis is down" in err.message and "restart" in err.hint and "credentials rotate postgres redis" in err.hint
    assert err.result["ok"] is False and [st["step"] for st in err.result["steps"]][0] == "plan"
    planned = plans.load_plan(s.home)
    assert planned is not None
    with pytest.raises(CommandError, match="unfinished rotation"):
        rotation.rotate(s, ["flower"], False, 60)
    monkeypatch.setattr(rotation.stores, "redis_only_new", lambda st, old, new: calls.append(("redis_only_new", new)))
    result = rotation.rotate(s, ["postgres", "redis"], False, 60)
    assert result["ok"] and result["resumed"]
    assert calls[-1] == ("redis_only_new", planned.new["redis_password"])
    assert secrets_mod.load(s.secrets_file, environ={}).redis_password == planned.new["redis_password"]
    assert plans.load_plan(s.home) is None


def test_refused_when_the_environment_sets_the_secret(wired, monkeypatch):
    s, _sec, calls = wired
    monkeypatch.setenv("APACHE_AIRFLOW_REDIS_PASSWORD", "pinned")
    with pytest.raises(CommandError, match="APACHE_AIRFLOW_REDIS_PASSWORD"):
        rotation.rotate(s, ["redis"], False, 60)
    assert calls == [] and plans.load_plan(s.home) is None


def test_refused_when_not_running(wired, monkeypatch):
    s, _sec, _calls = wired
    monkeypatch.setattr(rotation.handle, "is_running", lambda _s: False)
    with pytest.raises(CommandError, match="not running"):
        rotation.rotate(s, ["redis"], False, 60)


def test_drop_old_jwt_keys_only_after_the_grace(wired):
    s, sec, calls = wired
    with pytest.raises(CommandError) as none:
        rotation.drop_old_jwt_keys(s, 60)
    assert none.value.exit_code == 2
    jwks_trust.retire(s.run_dir, _key(), time.time() + 3600)
    with pytest.raises(CommandError, match="still trusted"):
        rotation.drop_old_jwt_keys(s, 60)
    jwks_trust.retire(s.run_dir, _key(), time.time() - 1)
    result = rotation.drop_old_jwt_keys(s, 60)
    assert len(result["dropped"]) == 1 and len(result["still_trusted"]) == 1
    assert ("stop", ("api-server",)) in calls


def test_an_unexpected_error_also_reports_the_state_it_left(wired, monkeypatch):
    s, _sec, _calls = wired

    def boom(st, old, new):
        raise RuntimeError("connection reset")

    monkeypatch.setattr(rotation.stores, "redis_accept_both", boom)
    with pytest.raises(rotation.RotationFailed, match="RuntimeError: connection reset") as failed:
        rotation.rotate(s, ["redis"], False, 60)
    assert "done so far: plan" in failed.value.hint and plans.load_plan(s.home) is not None


def test_restart_stops_together_rolls_workers_before_the_edge_and_skips_what_is_down(monkeypatch, make_settings, sec):
    comps = components.build(make_settings(), sec)
    by = {c.name: c for c in comps}
    events: list[tuple] = []
    monkeypatch.setattr(rotation, "_states", lambda st: {n: ("STOPPED" if n == "dag-processor" else "RUNNING")
                                                         for n in by})
    monkeypatch.setattr(rotation, "_stop", lambda st, cs: events.append(("stop", [c.name for c in cs])))
    monkeypatch.setattr(rotation, "_start", lambda st, cs, t: events.append(("start", [c.name for c in cs])))
    monkeypatch.setattr(rotation, "_roll_workers", lambda st, ws, t, d: events.append(("roll", [c.name for c in ws])))
    wanted = [by[n] for n in ("api-server", "scheduler", "dag-processor", "worker-1", "flower", "metrics")]
    st = type("St", (), {"comps": comps})()
    done = rotation.restart(st, wanted, 60, 60, lambda: events.append(("while_stopped",)))
    assert events == [("stop", ["metrics", "api-server", "scheduler", "flower"]), ("while_stopped",),
                      ("start", ["metrics", "api-server", "scheduler"]), ("roll", ["worker-1"]), ("start", ["flower"])]
    assert "dag-processor" not in done
    events.clear()
    assert rotation.restart(st, [by["api-server"]], 60, 60) == ["api-server", "scheduler"]  # scheduler: see restart
    assert events[0] == ("stop", ["api-server", "scheduler"])
