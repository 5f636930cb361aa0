"""`./cli.sh manage upgrade` and `./cli.sh manage rollback`: move a home to a newer pinned set, and back.

Upgrade: the new set's venv is built beside the one in use while the stack still runs (a venv is never
rebuilt in place: the old one stays for a rollback), then the stack stops, a backup of the stopped
stack is taken (an exact copy of what the old set ran), the home's record moves to the new set and
`./cli.sh manage start` runs `airflow db migrate` with the new venv and waits until every component is healthy.
Any failure after the stop rolls back by itself: the record goes back, the backup is restored (the
migration may have changed the schema), and the stack is started on the old set again if it ran.

Rollback restores the pre-upgrade backup rather than running `airflow db downgrade`: a downgrade runs
the newer Airflow's migration scripts backwards, and backwards they drop what the newer schema added
(3.3 -> 3.2: the xcom.dag_result column, the task and asset state store tables; deadline intervals that
are not timedeltas become NULL). The restore brings back exactly the database the old release ran with,
through the path the backup tests cover. What the upgraded stack did since (runs, connections, DAG files)
is kept in a second backup taken before the restore.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from airflow_resource import printer
from airflow_resource.backup import archive
from airflow_resource.backup import auth
from airflow_resource.backup import create as backup
from airflow_resource.stack import installer
from airflow_resource.config import pinned_sets
from airflow_resource.backup import restore
from airflow_resource.config import secrets
from airflow_resource.stack import handle
from airflow_resource.stack import shutdown
from airflow_resource.stack import startup
from airflow_resource.stack import system
from airflow_resource.errors import AlreadySo, CommandError
from airflow_resource.config.pinned_sets import PinnedSet, version_key
from airflow_resource.config.settings import Settings

STOP_TIMEOUT_S = 60
VERIFY_TIMEOUT_S = 180
PRE_UPGRADE, PRE_ROLLBACK = "pre-upgrade", "pre-rollback"  # kinds of the archives, in `./cli.sh backup list`


@dataclass(frozen=True)
class Plan:
    current: PinnedSet
    target: PinnedSet
    current_venv: Path
    target_venv: Path


def _require_installed(s: Settings) -> None:
    secrets.require_installed(s)


def _require_embedded(s: Settings, what: str) -> None:
    if not s.embedded_postgres:
        raise CommandError(f"{what} keeps a backup of the embedded PostgreSQL first; this home uses "
                           "APACHE_AIRFLOW_POSTGRES_URL", "back that server up with its own tools; nothing was changed")


def plan_upgrade(s: Settings, to: str | None) -> Plan:
    """Which set to move to and where its venv goes; refuses what is not a move forward."""
    _require_installed(s)
    current = installer.home_set(s)
    target = pinned_sets.get(to) if to else pinned_sets.newest()
    if version_key(target.airflow) == version_key(current.airflow):
        raise AlreadySo(f"{s.home} already runs pinned set {current.name} (Airflow {current.airflow})",
                        "`./cli.sh info` lists the pinned sets")
    if version_key(target.airflow) < version_key(current.airflow):
        raise CommandError(
            f"pinned set {target.name} (Airflow {target.airflow}) is older than the one {s.home} runs, "
            f"{current.name} (Airflow {current.airflow}): an upgrade only moves forward",
            "to undo the last upgrade: `./cli.sh manage rollback`; to run an older set: restore a backup made on it "
            "into a fresh home installed with --pinned-set; nothing was changed")
    _require_embedded(s, "an upgrade")
    configured = s.configured_venv or s.venv
    venv = pinned_sets.venv_for(s.home, target, configured, s.venv, installer.airflow_version(configured))
    return Plan(current, target, s.venv, venv)


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise CommandError(f"{question}: not confirmed", "pass --yes to confirm; nothing was changed")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise CommandError("not confirmed; nothing was changed")


def _refuse_half_running(s: Settings) -> bool:
    running = handle.is_running(s)
    if not running and handle.stack_processes(s):
        raise CommandError(f"the stack in {s.home} is partly running (supervisord is gone, components are not)",
                           "run `./cli.sh manage stop` first; nothing was changed")
    return running


def verify_venv(s: Settings, pinned: PinnedSet) -> None:
    """`airflow version` from the venv, as the service user with the stack's environment: it imports
    Airflow, its providers' entry points and the stack's config, as every component will."""
    st = handle.Stack.load(s)
    try:
        proc = st.run_airflow([str(s.venv / "bin" / "airflow"), "version"], VERIFY_TIMEOUT_S)
    except (OSError, ValueError) as exc:
        raise CommandError(f"the venv {s.venv} does not run Airflow: {exc}",
                           f"remove {s.venv} and run the upgrade again (it is rebuilt from the lock file)") from None
    version = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if proc.returncode != 0 or version != pinned.airflow:
        raise CommandError(f"the venv {s.venv} does not run Airflow {pinned.airflow}:\n"
                           + (proc.stderr or proc.stdout).strip()[-1500:],
                           f"remove {s.venv} and run the upgrade again (it is rebuilt from the lock file); "
                           "nothing was changed")


def _backup(s: Settings, kind: str) -> tuple[Path, float]:
    """A backup of the stopped stack, without the secrets: it is restored into this same home, whose
    secrets.env (and so Fernet key, which the archive's fingerprint checks) stays."""
    sec = secrets.load(s.secrets_file)
    assert sec is not None  # _require_installed
    who = system.run_as(s.service_user)
    backup.make_folder(s)
    t = time.monotonic()
    printer.step(f"taking the {kind} backup (PostgreSQL started alone, on a private port)")
    dest, _manifest = backup.create(s, sec, who, False, None, kind=kind)
    took = time.monotonic() - t
    printer.ok(f"{kind} backup in {took:.1f} s: {dest}")
    return dest, took


def _set_entry(pinned: PinnedSet, venv: Path, configured: Path) -> dict[str, Any]:
    """How the record names a set's venv: null for the configured one (so APACHE_AIRFLOW_VENV keeps working)."""
    return {"pinned_set": pinned.name, "airflow": pinned.airflow, "venv": None if venv == configured else str(venv)}


def upgrade(s: Settings, to: str | None, yes: bool, timeout: float,
            confirm: Callable[[str, bool], None] = _confirm) -> dict[str, Any]:
    begun = time.monotonic()
    p = plan_upgrade(s, to)
    running = _refuse_half_running(s)
    configured = s.configured_venv or s.venv
    confirm(f"upgrade {s.home} from pinned set {p.current.name} (Airflow {p.current.airflow}) to {p.target.name} "
            f"(Airflow {p.target.airflow}): the stack stops, is backed up, migrated and started again", yes)
    timings: dict[str, float | None] = {}
    new_s = dataclasses.replace(s, venv=p.target_venv, pinned_set=p.target.name)
    # 1. The new venv, beside the old one, while the stack still runs.
    printer.step(f"venv for pinned set {p.target.name}: {p.target_venv} (the one in use, {p.current_venv}, stays)")
    if p.target_venv.parent.name == pinned_sets.VENVS_DIR:
        p.target_venv.parent.mkdir(exist_ok=True)
    timings["venv_build"] = installer.ensure_venv(p.target_venv, p.target)
    verify_venv(new_s, p.target)
    printer.ok(f"{p.target_venv} runs Airflow {p.target.airflow}")
    # 2. Stop, then 3. back up the stopped stack: nothing written after the backup is lost by a rollback.
    if running:
        t = time.monotonic()
        shutdown.stop(s, STOP_TIMEOUT_S)
        timings["stop"] = time.monotonic() - t
    archive_path, timings["backup"] = _backup(s, PRE_UPGRADE)
    # 4. The record moves first: if this process dies now, `manage rollback` still finds the way back.
    old_record = pinned_sets.read_record(s.home)
    pinned_sets.write_record(s.home, {
        **old_record, **_set_entry(p.target, p.target_venv, configured), "upgraded_at": time.time(),
        "previous": {**_set_entry(p.current, p.current_venv, configured), "backup": str(archive_path)}})
    # 5. Migrate (the start does: .migrated-<version> is new) and wait until every component is healthy.
    t = time.monotonic()
    try:
        st = startup.start(new_s, timeout)
    except (CommandError, OSError, KeyboardInterrupt) as exc:
        _roll_back_failed_upgrade(s, new_s, old_record, archive_path, running, timeout, exc, p)
        raise  # not reached: the rollback raises
    timings["migrate"] = st.migrate_s
    timings["start"] = time.monotonic() - t
    if not running:
        shutdown.stop(new_s, STOP_TIMEOUT_S)  # it was stopped: leave it so, migrated and checked
    timings["total"] = time.monotonic() - begun
    report = {"home": str(s.home), "upgraded": True,
              "from": {"pinned_set": p.current.name, "airflow": p.current.airflow, "venv": str(p.current_venv)},
              "to": {"pinned_set": p.target.name, "airflow": p.target.airflow, "venv": str(p.target_venv),
                     "venv_built": timings["venv_build"] is not None},
              "backup": str(archive_path), "running": running,
              "timings_s": {k: (round(v, 1) if v is not None else None) for k, v in timings.items()}}
    printer.ok(f"upgraded {s.home} from Airflow {p.current.airflow} to {p.target.airflow} in {timings['total']:.0f} s")
    printer.ok(f"pre-upgrade backup: {archive_path}")
    printer.ok(f"the previous venv stays in {p.current_venv}; go back with: `./cli.sh manage rollback`")
    return report


def _roll_back_failed_upgrade(s: Settings, new_s: Settings, old_record: dict[str, Any], archive_path: Path,
                              was_running: bool, timeout: float, exc: BaseException, p: Plan) -> None:
    reason = exc.message if isinstance(exc, CommandError) else f"{type(exc).__name__}: {exc}"
    printer.warn(f"the upgrade to {p.target.name} failed: {reason.splitlines()[0] if reason else ''}")
    printer.step(f"rolling back to pinned set {p.current.name}: restoring {archive_path.name}")
    try:
        if handle.is_running(new_s) or handle.stack_processes(new_s):
            shutdown.stop(new_s, STOP_TIMEOUT_S, force=True)
        pinned_sets.write_record(s.home, old_record)
        old_s = dataclasses.replace(s, venv=p.current_venv, pinned_set=p.current.name)
        restore.restore(old_s, archive_path, None, force=True, accept_settings=True)
        if was_running:
            startup.start(old_s, timeout)
    except (CommandError, OSError) as again:
        detail = again.message if isinstance(again, CommandError) else str(again)
        raise CommandError(
            f"the upgrade to pinned set {p.target.name} failed ({reason}), and so did the rollback: {detail}",
            f"the pre-upgrade backup is {archive_path}: `./cli.sh manage stop --force`, then "
            f"`./cli.sh backup restore {archive_path} --force`, then `./cli.sh manage start`") from exc
    hint = exc.hint if isinstance(exc, CommandError) and exc.hint else "read the components' logs: `./cli.sh logs --tail 100`"
    raise CommandError(
        f"the upgrade to pinned set {p.target.name} (Airflow {p.target.airflow}) failed and was rolled back: "
        f"{s.home} runs pinned set {p.current.name} (Airflow {p.current.airflow}) again, its database restored "
        f"from {archive_path}{' and the stack started' if was_running else ''}.\nWhat failed: {reason}",
        f"{hint}; the new venv stays in {p.target_venv} for the next try") from exc


def rollback(s: Settings, yes: bool, timeout: float,
             confirm: Callable[[str, bool], None] = _confirm) -> dict[str, Any]:
    """Back to the set the last upgrade came from, with the database of the pre-upgrade backup."""
    begun = time.monotonic()
    _require_installed(s)
    record = pinned_sets.read_record(s.home)
    prev = record.get("previous")
    current = installer.home_set(s)
    if not prev:
        raise AlreadySo(f"{s.home} has no upgrade to roll back (it runs pinned set {current.name}, "
                        f"Airflow {current.airflow})", "`./cli.sh manage upgrade` moves it to a newer pinned set")
    _require_embedded(s, "a rollback")
    configured = s.configured_venv or s.venv
    old_venv = Path(prev["venv"]) if prev.get("venv") else configured
    archive_path = Path(prev["backup"])
    # Everything is checked before anything stops.
    if not archive_path.is_file():
        raise CommandError(f"the pre-upgrade backup {archive_path} is gone: a rollback restores it",
                           f"put it back, or restore another backup made on Airflow {prev['airflow']} into a fresh "
                           "home; nothing was changed")
    manifest = archive.read_manifest(archive_path)
    if auth.described(manifest) == "none":  # <home>/backups is the service user's: only a tag vouches for it
        raise CommandError(f"the pre-upgrade backup {archive_path} has no authentication tag (it was made before "
                           "backups were authenticated), so a rollback does not restore it",
                           "if it never left your control: `./cli.sh manage stop`, then `./cli.sh backup restore "
                           f"{archive_path} --force {auth.ALLOW_FLAG}`; nothing was changed")
    if installer.airflow_version(old_venv) != prev["airflow"] or installer.missing_modules(old_venv):
        try:
            previous_set = pinned_sets.get(prev["pinned_set"])
        except CommandError:
            raise CommandError(f"the venv of pinned set {prev['pinned_set']} ({old_venv}) is gone, and this "
                               "repository no longer has that set to rebuild it",
                               "check out the version of this repository that has it; nothing was changed") from None
        printer.warn(f"the venv of pinned set {previous_set.name} ({old_venv}) is gone or incomplete: rebuilding it")
        installer.ensure_venv(old_venv, previous_set)
    running = _refuse_half_running(s)
    confirm(f"roll {s.home} back from pinned set {current.name} (Airflow {current.airflow}) to "
            f"{prev['pinned_set']} (Airflow {prev['airflow']}), restoring the database of {archive_path.name} "
            f"(made {manifest.get('created')})", yes)
    timings: dict[str, float] = {}
    if running:
        t = time.monotonic()
        shutdown.stop(s, STOP_TIMEOUT_S)
        timings["stop"] = time.monotonic() - t
    # What the upgraded stack did since the upgrade, kept: the restore replaces it.
    newer_path, timings["backup"] = _backup(s, PRE_ROLLBACK)
    new_record = {k: v for k, v in record.items() if k != "previous"}
    new_record.update({"pinned_set": prev["pinned_set"], "airflow": prev["airflow"], "venv": prev.get("venv"),
                       "rolled_back_at": time.time(),
                       "rolled_back_from": {"pinned_set": current.name, "airflow": current.airflow,
                                            "venv": record.get("venv"), "backup": str(newer_path)}})
    pinned_sets.write_record(s.home, new_record)
    old_s = dataclasses.replace(s, venv=old_venv, pinned_set=prev["pinned_set"])
    t = time.monotonic()
    try:
        restore.restore(old_s, archive_path, None, force=True, accept_settings=True)
    except BaseException:
        pinned_sets.write_record(s.home, record)  # the restore changed nothing: neither does the record
        raise
    timings["restore"] = time.monotonic() - t
    if running:
        t = time.monotonic()
        startup.start(old_s, timeout)
        timings["start"] = time.monotonic() - t
    took = timings["total"] = time.monotonic() - begun
    printer.ok(f"rolled {s.home} back to Airflow {prev['airflow']} (pinned set {prev['pinned_set']}) in {took:.0f} s")
    printer.ok(f"what the upgraded stack held until now is in {newer_path}")
    return {"home": str(s.home), "rolled_back": True,
            "from": {"pinned_set": current.name, "airflow": current.airflow, "venv": str(s.venv)},
            "to": {"pinned_set": prev["pinned_set"], "airflow": prev["airflow"], "venv": str(old_venv)},
            "restored": str(archive_path), "backup": str(newer_path), "running": running,
            "timings_s": {k: round(v, 1) for k, v in timings.items()}}
