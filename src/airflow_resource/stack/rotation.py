"""`credentials rotate`: new secrets for a running stack, applied where each lives, its holders restarted,
while DAG runs go on.

The order keeps every running component's secret working (docs/credentials.md, "Rotation"):
1. the plan: the new values saved before anything is applied (rotation_plan.py: resumable);
2. what can hold two values at once takes both: Redis' default user the old and the new password, the
   JWKS the new and the old public key;
3. the holders (rotation_plan.holders) stop together; while none of them runs, PostgreSQL's roles get their
   new passwords, secrets.env and every component's env file are rewritten (the Fernet key as "new,old"),
   the admin and the connection resource_postgres are set; then they start again in start order, and
   the Celery workers, one at a time, once their running tasks are done (no task is killed);
4. Redis refuses the old password; `airflow rotate-fernet-key` re-encrypts under the new key, then the old
   key leaves secrets.env and the Fernet holders restart once more;
5. the plan is removed. The old JWT public key stays trusted until the tokens it signed have expired.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import Future, ThreadPoolExecutor
import xmlrpc.client
from datetime import datetime, timezone
from typing import Any, Callable

from airflow_resource import printer
from airflow_resource.config import airflow_config
from airflow_resource.config import jwks_trust
from airflow_resource.config.settings import Settings
from airflow_resource.config.secrets import Secrets
from airflow_resource.errors import AlreadySo, CommandError
from airflow_resource.stack import components
from airflow_resource.stack import handle
from airflow_resource.stack import oneoffs
from airflow_resource.stack import rotation_plan as plans
from airflow_resource.stack import rotation_stores as stores
from airflow_resource.stack import shutdown
from airflow_resource.stack import startup
from airflow_resource.stack import supervisor
from airflow_resource.stack import system
from airflow_resource.stack.components import Component
from airflow_resource.stack.handle import Stack

DEFAULT_DRAIN_TIMEOUT_S = 3600
# Tasks retry a failed Execution API call 2-30 s apart (airflow_config.tuning): one heartbeat round.
HEARTBEAT_WAIT_S = 90


def audit_record(s: Settings, result: dict[str, Any]) -> None:
    """The rotation in the event log: the one place that knows what it did (names, steps, restarts,
    outcome; never a secret)."""
    from airflow_resource import audit

    audit.record(s, "resource.credentials.rotate", outcome="ok" if result.get("ok", True) else "failed", **result)


class Progress:
    """The steps done so far, with the state each leaves: printed as they end, and what a failure reports."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []
        self.restarted: list[str] = []

    def run(self, name: str, leaves: str, fn: Callable[[], Any]) -> Any:
        printer.step(f"{name}: ...")
        t = time.monotonic()
        out = fn()
        took = round(time.monotonic() - t, 1)
        self.steps.append({"step": name, "state": leaves, "seconds": took})
        printer.ok(f"{name} ({took} s): {leaves}")
        return out


def _stack(s: Settings, sec: Secrets) -> Stack:
    pg = system.pg_bindir() if s.embedded_postgres else None
    redis = system.redis_server() if s.embedded_redis else None
    return Stack(s, sec, system.run_as(s.service_user), components.build(s, sec, str(pg or ""), str(redis or "")))


def _states(st: Stack) -> dict[str, str]:
    return {i["name"]: i["statename"] for i in st.rpc().getAllProcessInfo()}


def _stop(st: Stack, comps: list[Component]) -> None:
    if not comps:
        return
    rpc = st.rpc()
    for c in comps:
        try:
            rpc.stopProcess(c.name, False)
        except xmlrpc.client.Fault as fault:
            if "NOT_RUNNING" not in fault.faultString:
                raise
    deadline = time.monotonic() + max(c.stop_timeout for c in comps) + shutdown.KILL_WAIT_S
    names = {c.name for c in comps}
    while time.monotonic() < deadline:
        if all(state in supervisor.STOPPED_OR_WAITING for n, state in _states(st).items() if n in names):
            return
        time.sleep(startup.POLL_S)
    raise CommandError(f"{', '.join(sorted(names))} did not stop in time", "read their logs: `./cli.sh logs NAME`")


def _start(st: Stack, comps: list[Component], timeout: float) -> None:
    """Group by group in start order. After the api-server: its Execution API warmed up (the first request
    of each worker builds it: 30 s on a loaded machine), and, before a scheduler starts, the running tasks'
    heartbeats fresh again (a scheduler that finds one silent for its heartbeat timeout fails the task)."""
    deadline = time.monotonic() + timeout
    names = {c.name for c in comps}
    for group in components.groups(comps):
        startup.start_group(st, group)
        startup.wait_ready(st, group, deadline, " ".join(c.name for c in group))
        if "api-server" in {c.name for c in group}:
            back = time.time()
            oneoffs.warm_execution_api(st.s, deadline)
            if "scheduler" in names:
                silent = stores.wait_for_task_heartbeats(st, back, HEARTBEAT_WAIT_S)
                if silent:
                    printer.warn(f"{silent} running task(s) did not heartbeat within {HEARTBEAT_WAIT_S} s of the "
                                 "api-server's return: the scheduler may fail them (retried if they have retries)")


def _roll_workers(st: Stack, workers: list[Component], timeout: float, drain_timeout: float) -> None:
    """One worker at a time: no new task, its running tasks finish, warm shutdown, start, ready."""
    broker = airflow_config.redis_url(st.s, st.sec)
    for c in workers:
        left = stores.drain_worker(broker, components.worker_hostname(int(c.name[len(components.WORKER_PREFIX):])),
                                   drain_timeout)
        if left:
            printer.warn(f"{c.name} still runs {left} task(s) after {drain_timeout:.0f} s: restarting it with its "
                         f"stop grace ({c.stop_timeout} s); a task killed then is retried if it has retries")
        _stop(st, [c])
        _start(st, [c], timeout)


def restart(st: Stack, comps: list[Component], timeout: float, drain_timeout: float,
            while_stopped: Callable[[], None] | None = None) -> list[str]:
    """Restart the running ones of `comps` with `st`'s env files: all but the workers stop together,
    `while_stopped` runs, they start again in start order, the workers roll before the edge group
    (Flower must find them up). Components that were not running are left for their next start."""
    states = _states(st)
    names = {c.name for c in comps}
    if "api-server" in names:
        # While the api-server is away no task can heartbeat: a scheduler left running would fail them.
        names.add("scheduler")
    up = [c for c in st.comps if c.name in names and states.get(c.name) in supervisor.UP]
    others = [c for c in up if not plans.is_worker(c)]
    workers = [c for c in up if plans.is_worker(c)]
    _stop(st, others)
    if while_stopped is not None:
        while_stopped()
    _start(st, [c for c in others if c.priority < components.EDGE], timeout)
    _roll_workers(st, workers, timeout, drain_timeout)
    _start(st, [c for c in others if c.priority >= components.EDGE], timeout)
    return [c.name for c in up]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def rotate(s: Settings, names: list[str], all_: bool, timeout: float, jwt_grace: int | None = None,
           drain_timeout: float = DEFAULT_DRAIN_TIMEOUT_S) -> dict[str, Any]:
    import os

    if not handle.is_running(s):
        raise CommandError(f"the stack in {s.home} is not running",
                           "rotation applies new secrets to the running stack: `./cli.sh manage start` first")
    plan = plans.load_plan(s.home)
    if plan is not None and (names or all_):
        wanted = plans.parse_names(names, all_, s.embedded_postgres, s.embedded_redis)
        if set(wanted) != set(plan.names):
            raise CommandError(f"an unfinished rotation of {', '.join(plan.names)} (begun {_iso(plan.started)}) "
                               "is pending", f"finish it first: `./cli.sh credentials rotate {' '.join(plan.names)}`")
    elif plan is None:
        wanted = plans.parse_names(names, all_, s.embedded_postgres, s.embedded_redis)
    overridden = plans.env_overridden(plan.names if plan else wanted, os.environ)
    if overridden:
        raise CommandError(f"{', '.join(overridden)} set in the environment: it wins over secrets.env, so a "
                           "rotation would not take effect", "unset it to let the resource rotate it, or change it "
                           "where it is set")
    progress = Progress()
    t0 = time.monotonic()
    stored = plans.stored_secrets(s.secrets_file)
    if plan is None:
        env = airflow_config.airflow_env(s, plans.effective(stored))
        grace = jwt_grace if jwt_grace is not None else jwks_trust.token_lifetime(env)
        plan = progress.run("plan", f"new secrets for {', '.join(wanted)} saved in {plans.plan_path(s.home)} "
                            "(nothing applied yet)", lambda: plans.new_plan(s.home, wanted, stored, grace))
    else:
        printer.step(f"resuming the rotation of {', '.join(plan.names)} begun {_iso(plan.started)}")
    result = {"ok": False, "rotated": plan.names, "resumed": plan.resumed, "steps": progress.steps,
              "restarted": progress.restarted}
    try:
        _apply(s, plan, stored, progress, timeout, drain_timeout, result)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - whatever stopped it, say what state it left
        error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}".rstrip(": ")
        result.update(seconds=round(time.monotonic() - t0, 1), error=error)
        audit_record(s, result)
        done = "; ".join(f"{d['step']}: {d['state']}" for d in progress.steps) or "nothing"
        raise RotationFailed(result, f"rotation of {', '.join(plan.names)} stopped: {result['error']}",
                             f"done so far: {done}. The new secrets are kept in {plans.plan_path(s.home)}; every "
                             f"step is safe to repeat: fix the cause, then run `./cli.sh credentials rotate "
                             f"{' '.join(plan.names)}` to finish") from exc
    plans.drop_plan(s.home)
    result.update(ok=True, seconds=round(time.monotonic() - t0, 1))
    audit_record(s, result)
    return result


class RotationFailed(CommandError):
    def __init__(self, result: dict[str, Any], message: str, hint: str):
        super().__init__(message, hint)
        self.result = result


def _apply(s: Settings, plan: plans.Plan, stored: Secrets, progress: Progress, timeout: float,
           drain_timeout: float, result: dict[str, Any]) -> None:
    names = plan.names
    old_effective = plans.effective(dataclasses.replace(stored, **plan.old))
    old_st = _stack(s, old_effective)
    main = plan.secrets(plans.effective(stored), fernet_both=True)
    st = _stack(s, main)
    if "redis" in names:
        progress.run("redis: both passwords", "Redis takes the old and the new password",
                     lambda: stores.redis_accept_both(old_st, plan.old["redis_password"], plan.new["redis_password"]))
    if "jwt" in names:
        def trust_both() -> None:
            jwks_trust.retire(s.run_dir, plan.old["jwt_private_key"], time.time() + plan.jwt_grace_s)
            jwks_trust.write(airflow_config.jwks_file(s), plan.new["jwt_private_key"])
        progress.run("jwt: JWKS", "run/jwks.json trusts the new and the old public key", trust_both)
    holders = plans.holders(st.comps, names)

    def while_stopped() -> None:
        if "postgres" in names:
            progress.run("postgres: passwords", "roles airflow, resource_data and postgres take only the new "
                         "passwords", lambda: stores.set_postgres_passwords(old_st, old_effective, main))
        progress.run("secrets.env", "secrets.env and every component's env file hold the new secrets"
                     + (" (Fernet: new,old)" if "fernet" in names else ""), lambda: _write_all(s, st, plan, True))
        if "admin" in names or "postgres" in names:
            # A one-off of seconds, beside the restart rather than before it: the api-server is not held
            # down for it, and resource_postgres gets its role's new password at once.
            oneoff.append(background.submit(
                progress.run, "admin / resource_postgres", "FAB admin password and connection resource_postgres set",
                lambda: stores.set_admin_and_data_connection(st, "postgres" in names)))

    oneoff: list[Future] = []
    if holders:
        printer.step(f"restarting {', '.join(c.name for c in holders)} (they hold the rotated secrets)")
    with ThreadPoolExecutor(max_workers=1) as background:
        progress.run("restart", "the holders run with the new secrets",
                     lambda: progress.restarted.extend(restart(st, holders, timeout, drain_timeout, while_stopped)))
        for f in oneoff:
            f.result()
    if "jwt" in names:  # the grace counts from when the issuers stopped signing with the old key
        until = time.time() + plan.jwt_grace_s
        jwks_trust.retire(s.run_dir, plan.old["jwt_private_key"], until)
        result["jwt_old_key_trusted_until"] = _iso(until)
    if "redis" in names:
        progress.run("redis: old password refused", "Redis takes only the new password",
                     lambda: stores.redis_only_new(st, plan.old["redis_password"], plan.new["redis_password"]))
    if "fernet" in names:
        progress.run("fernet: re-encrypt", "connections, variables and triggers encrypted under the new key",
                     lambda: stores.reencrypt_fernet(st))
        final = plan.secrets(plans.effective(stored), fernet_both=False)
        st_final = _stack(s, final)
        fernet_holders = plans.holders(st_final.comps, ["fernet"])
        progress.run("fernet: old key dropped", "secrets.env and the components hold only the new Fernet key",
                     lambda: progress.restarted.extend(restart(st_final, fernet_holders, timeout, drain_timeout,
                                                               lambda: _write_all(s, st_final, plan, False))))


def _write_all(s: Settings, st: Stack, plan: plans.Plan, fernet_both: bool) -> None:
    stored = plans.stored_secrets(s.secrets_file)
    plans.write_secrets(s.secrets_file, stored, dataclasses.asdict(plan.secrets(stored, fernet_both)))
    startup.write_configs(st)


def drop_old_jwt_keys(s: Settings, timeout: float) -> dict[str, Any]:
    """Forget retired JWT keys whose grace is over and restart the verifier (the api-server reads the
    JWKS once): tokens they signed are refused from then on. Exit 2 when there is none."""
    if not handle.is_running(s):
        raise CommandError(f"the stack in {s.home} is not running", "the next `./cli.sh manage start` drops them")
    retired = jwks_trust.load_retired(s.run_dir)
    now = time.time()
    expired = [r for r in retired if r["not_after"] <= now]
    if not expired:
        pending = ", ".join(f"{r['jwk'].get('kid', '')[:12]} until {_iso(r['not_after'])}" for r in retired)
        raise AlreadySo("no retired JWT key past its grace" + (f" (still trusted: {pending})" if pending else ""),
                        "run it again after that time" if pending else None)
    st = _stack(s, plans.effective(plans.stored_secrets(s.secrets_file)))
    jwks_trust.write(airflow_config.jwks_file(s), st.sec.jwt_private_key, now)
    api = [c for c in st.comps if c.name == "api-server"]
    restarted = restart(st, api, timeout, 0)
    result = {"ok": True, "dropped": [r["jwk"].get("kid") for r in expired], "restarted": restarted,
              "still_trusted": [{"kid": r["jwk"].get("kid"), "until": _iso(r["not_after"])}
                                for r in retired if r["not_after"] > now]}
    audit_record(s, {"action": "drop-old-jwt-keys", **result})
    return result
