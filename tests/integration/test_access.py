"""Users, roles and teams on the real stack (issue 14): two teams with a DAG and a user each. Through the REST API
each user reaches only their team's DAG (list, get, trigger, clear, task logs, XComs; the other team's are
refused), the admin reaches both, and in Chromium team alpha's user sees alpha's DAG and not beta's. Weak
passwords, names with shell or SQL metacharacters, duplicates and unknown names are refused and change
nothing. Every change goes through the CLI (`users`, `roles`, `teams`, `content add --team`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests

from tests.conftest import start_stack, stop_and_remove
from tests.integration.test_stack import _run_dag

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "access"
TEAMS = {"alpha": ("alice", "Tulip-granite-42-moss"), "beta": ("bob", "Orbit-canyon-77-fern")}
REFUSED = (403, 404)
UI_TIMEOUT_MS = 60_000
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "access"


@pytest.fixture(scope="module")
def stack():
    st = start_stack("af-access-")
    yield st
    stop_and_remove(st)


def ok(proc) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def cli_in(stack, *args: str, stdin: str | None = None, env: dict | None = None):
    import subprocess
    import sys

    from tests.conftest import REPO
    return subprocess.run([sys.executable, "-m", "airflow_resource", *args], env={**stack.env, **(env or {})},
                          cwd=REPO, input=stdin, capture_output=True, text=True, timeout=300)


def fab(stack, method: str, path: str, **kw) -> requests.Response:
    return requests.request(method, f"{stack.api}/auth/fab/v1{path}", timeout=30,
                            headers={"Authorization": f"Bearer {stack.token()}"}, **kw)


def token(stack, user: str, password: str) -> str:
    r = requests.post(f"{stack.api}/auth/token", json={"username": user, "password": password}, timeout=30)
    assert r.status_code in (200, 201), r.text
    return r.json()["access_token"]


def as_user(stack, tok: str, method: str, path: str, headers: dict | None = None, **kw) -> requests.Response:
    return requests.request(method, f"{stack.api}/api/v2{path}", timeout=30,
                            headers={"Authorization": f"Bearer {tok}", **(headers or {})}, **kw)


@pytest.fixture(scope="module")
def world(stack):
    """Two teams, a DAG each (placed with content add --team), a user each (only the team's role), one
    finished run of each DAG (its task log and XCom) made by the admin."""
    runs = {}
    for team, (user, password) in TEAMS.items():
        ok(stack.cli("teams", "add", team))
        ok(stack.cli("content", "add", "--file", str(FIXTURES / f"access_{team}.py"), "--team", team, timeout=300))
        ok(cli_in(stack, "users", "add", user, "--role", f"team-{team}", "--password-stdin", stdin=password + "\n"))
        run_id, run = _run_dag(stack, f"access_{team}")
        assert run["state"] == "success", run
        runs[team] = run_id
    tokens = {team: token(stack, user, pw) for team, (user, pw) in TEAMS.items()}
    return {"runs": runs, "tokens": tokens}


def test_teams_list_and_users_list_show_the_setup(stack, world):
    teams = {t["team"]: t for t in json.loads(ok(stack.cli("teams", "list", "--format", "json")))}
    assert teams["alpha"]["dags"] == ["access_alpha"] and teams["alpha"]["users"] == ["alice"]
    assert teams["beta"]["dags"] == ["access_beta"] and teams["beta"]["users"] == ["bob"]
    assert all(t["in_sync"] for t in teams.values())
    assert Path(teams["alpha"]["folder"], "access_alpha.py").is_file()
    users = {u["username"]: u for u in json.loads(ok(stack.cli("users", "list", "--format", "json")))}
    assert users["alice"]["roles"] == ["team-alpha"] and users["bob"]["roles"] == ["team-beta"]
    assert users["admin"]["managed_by_resource"]
    role = next(r for r in json.loads(ok(stack.cli("roles", "list", "--format", "json"))) if r["name"] == "team-alpha")
    dag_resources = {res for _a, res in role["permissions"] if res == "DAGs" or res.startswith("DAG:")}
    assert dag_resources == {"DAG:access_alpha", "DAGs"}  # "DAGs": the menu entry only
    assert ["menu_access", "DAGs"] in role["permissions"] and ["can_read", "DAGs"] not in role["permissions"]


@pytest.mark.parametrize("team, other", [("alpha", "beta"), ("beta", "alpha")])
def test_a_team_user_reaches_only_the_teams_dag_through_rest(stack, world, team, other):
    tok, mine, theirs = world["tokens"][team], f"access_{team}", f"access_{other}"
    run_mine, run_theirs = world["runs"][team], world["runs"][other]

    listed = {d["dag_id"] for d in as_user(stack, tok, "GET", "/dags", params={"limit": 100}).json()["dags"]}
    assert listed == {mine}, listed  # neither the other team's DAG nor the example DAGs (no team)
    runs = as_user(stack, tok, "GET", "/dags/~/dagRuns", params={"limit": 100}).json()["dag_runs"]
    assert {r["dag_id"] for r in runs} == {mine}
    xcoms = as_user(stack, tok, "GET", "/dags/~/dagRuns/~/taskInstances/~/xcomEntries", params={"limit": 100})
    assert {x["dag_id"] for x in xcoms.json()["xcom_entries"]} == {mine}

    def calls(dag_id: str, run_id: str):
        ti = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/produce"
        return {
            "get": as_user(stack, tok, "GET", f"/dags/{dag_id}"),
            "details": as_user(stack, tok, "GET", f"/dags/{dag_id}/details"),
            "source": as_user(stack, tok, "GET", f"/dagSources/{dag_id}"),
            "runs": as_user(stack, tok, "GET", f"/dags/{dag_id}/dagRuns"),
            "log": as_user(stack, tok, "GET", f"{ti}/logs/1", headers={"Accept": "application/json"}),
            "xcom": as_user(stack, tok, "GET", f"{ti}/xcomEntries/return_value"),
            "clear": as_user(stack, tok, "POST", f"/dags/{dag_id}/clearTaskInstances",
                             json={"dry_run": True, "dag_run_id": run_id, "only_failed": False}),
            "trigger": as_user(stack, tok, "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None}),
        }

    own = calls(mine, run_mine)
    assert {k: r.status_code for k, r in own.items()} == {k: 200 for k in own}, {k: r.text[:200] for k, r in own.items()}
    assert f"log line of team {team}" in own["log"].text and f"team {team}" in own["xcom"].text

    before = stack.rest("GET", f"/dags/{theirs}/dagRuns").json()["total_entries"]
    foreign = calls(theirs, run_theirs)
    assert all(r.status_code in REFUSED for r in foreign.values()), {k: (r.status_code, r.text[:200])
                                                                    for k, r in foreign.items()}
    assert f"log line of team {other}" not in foreign["log"].text
    # FAB has no per-asset rights: the team role has none, so no DAG's asset events show.
    events = as_user(stack, tok, "GET", "/assets/events", params={"source_dag_id": theirs})
    assert events.status_code in REFUSED, events.text[:300]
    assert stack.rest("GET", f"/dags/{theirs}/dagRuns").json()["total_entries"] == before, "a refused trigger ran"
    # Each refusal is in the audit trail under the user's name, with Airflow's reason.
    user = TEAMS[team][0]

    def refused_rows():
        proc = stack.cli("audit", "--event", "resource.access.refused", "--user", user, "--format", "json",
                         "--limit", "200", timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return [r for r in json.loads(proc.stdout) if theirs in r["extra"]["path"]]

    rows = stack.wait_for(refused_rows, 60, f"{user}'s refusals on {theirs} in the audit trail", poll=2.0)
    assert {r["extra"]["status"] for r in rows} <= {401, 403} and {r["extra"]["detail"] for r in rows} == {"Forbidden"}
    refused_paths = {r["extra"]["path"] for r in rows}
    assert f"/api/v2/dags/{theirs}" in refused_paths, refused_paths


def test_the_admin_reaches_both(stack, world):
    listed = {d["dag_id"] for d in stack.rest("GET", "/dags", params={"limit": 100}).json()["dags"]}
    assert {"access_alpha", "access_beta"} <= listed
    for team, run_id in world["runs"].items():
        r = stack.rest("GET", f"/dags/access_{team}/dagRuns/{run_id}/taskInstances/produce/xcomEntries/return_value")
        assert r.status_code == 200 and f"team {team}" in r.text


def test_a_team_user_sees_only_the_teams_dag_in_chromium(stack, world, browser):
    from playwright import sync_api

    from tests.browser import login

    user, password = TEAMS["alpha"]
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        login(page, stack.api, user, password)
        page.goto(f"{stack.api}/dags")
        try:  # a loaded machine can take seconds to answer the list
            sync_api.expect(page.get_by_role("link", name="access_alpha", exact=True)).to_be_visible(
                timeout=UI_TIMEOUT_MS)
        except AssertionError as exc:
            shot = ARTIFACTS / "team-dag-list.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot))
            rest = as_user(stack, world["tokens"]["alpha"], "GET", "/dags").json()
            raise AssertionError(f"{exc}\nscreenshot: {shot}\nthe REST API lists for {user}: "
                                 f"{[d['dag_id'] for d in rest['dags']]}") from None
        assert page.get_by_role("link", name="access_beta", exact=True).count() == 0
        assert page.get_by_role("link", name="example_etl", exact=True).count() == 0
        assert "access_beta" not in page.content()
        # Straight to the other team's DAG: every call the UI makes for it is refused.
        beta_calls = []
        page.on("response", lambda r: beta_calls.append((r.url, r.status)) if _api_call_for(r.url, "access_beta")
                else None)
        with page.expect_response(lambda r: _api_call_for(r.url, "access_beta")):
            page.goto(f"{stack.api}/dags/access_beta")
        page.wait_for_timeout(3000)  # the page's other calls
        assert beta_calls
        assert [(url, status) for url, status in beta_calls if status not in REFUSED] == []
    finally:
        context.close()


def _api_call_for(url: str, dag_id: str) -> bool:
    return ("/api/v2/" in url or "/ui/" in url) and re.search(rf"\b{dag_id}\b", url) is not None


def test_weak_passwords_and_bad_names_are_refused_and_change_nothing(stack, world, tmp_path):
    users_before = fab(stack, "GET", "/users", params={"limit": 100}).json()["total_entries"]
    roles_before = fab(stack, "GET", "/roles", params={"limit": 100}).json()["total_entries"]

    weak = cli_in(stack, "users", "add", "weakling", "--password-stdin", stdin="password1234\n")
    assert weak.returncode == 1 and "too weak" in weak.stderr and "password1234" not in weak.stderr + weak.stdout
    same = cli_in(stack, "users", "add", "carol", "--password-stdin", stdin="carol-was-here-2026\n")
    assert same.returncode == 1 and "contains the user name" in same.stderr
    for args in (["users", "add", "eve;id", "--password-stdin"], ["users", "add", "x' OR '1'='1", "--password-stdin"],
                 ["roles", "add", "r'); DROP TABLE ab_role;--"], ["teams", "add", "../../etc"],
                 ["teams", "add", "$(touch /tmp/pwned)"], ["users", "set-roles", "alice", "Viewer;id"]):
        proc = cli_in(stack, *args, stdin="Some-strong-pass-99\n")
        assert proc.returncode == 1, (args, proc.stderr)
        assert "is not allowed" in proc.stderr and "may hold" in proc.stderr, proc.stderr
    assert not Path("/tmp/pwned").exists()

    dup_user = cli_in(stack, "users", "add", "alice", "--password-stdin", stdin="Another-strong-pw-31\n")
    dup_team = stack.cli("teams", "add", "alpha")
    assert dup_user.returncode == 2 and "already exists" in dup_user.stderr
    assert dup_team.returncode == 2 and "already exists" in dup_team.stderr
    for args, words in ((["users", "remove", "ghost"], "no user named 'ghost'"),
                        (["users", "set-roles", "alice", "NoSuchRole"], "no role named 'NoSuchRole'"),
                        (["teams", "add-user", "gamma", "alice"], "no team named 'gamma'"),
                        (["content", "add", "--file", str(FIXTURES / "access_alpha.py"), "--team", "gamma"],
                         "no team named 'gamma'")):
        proc = stack.cli(*args)
        assert proc.returncode != 0 and words in proc.stderr, (args, proc.stderr)
    argv = stack.cli("users", "set-password", "alice", "--password", "Pw-on-the-command-line-1")
    assert argv.returncode == 1 and "--password" in argv.stderr and "usage:" in argv.stderr
    override = cli_in(stack, "users", "list", env={"APACHE_AIRFLOW_ADMIN_PASSWORD": "admin"})
    assert override.returncode == 1 and "APACHE_AIRFLOW_ADMIN_PASSWORD is too weak" in override.stderr
    admin = stack.cli("users", "remove", "admin")
    assert admin.returncode == 1 and "resource's admin" in admin.stderr

    assert fab(stack, "GET", "/users", params={"limit": 100}).json()["total_entries"] == users_before
    assert fab(stack, "GET", "/roles", params={"limit": 100}).json()["total_entries"] == roles_before
    alice = fab(stack, "GET", "/users/alice").json()
    assert [r["name"] for r in alice["roles"]] == ["team-alpha"]
    assert not (stack.home / "dags" / "teams" / "gamma").exists()
    token(stack, "alice", TEAMS["alpha"][1])  # the refused set-password changed nothing


def test_set_password_from_a_file_and_a_custom_role(stack, world, tmp_path):
    user, old = TEAMS["beta"]
    new = "Harbour-new-58-lake"
    f = tmp_path / "pw"
    f.write_text(new + "\n")
    ok(stack.cli("users", "set-password", user, "--password-file", str(f)))
    r = requests.post(f"{stack.api}/auth/token", json={"username": user, "password": old}, timeout=30)
    assert r.status_code == 401
    token(stack, user, new)

    ok(stack.cli("roles", "add", "auditors", "--copy-from", "Viewer"))
    ok(stack.cli("roles", "grant", "auditors", "can_read", "Connections"))
    grant_again = stack.cli("roles", "grant", "auditors", "can_read", "Connections")
    assert grant_again.returncode == 2
    role = fab(stack, "GET", "/roles/auditors").json()
    assert {"action": {"name": "can_read"}, "resource": {"name": "Connections"}} in role["actions"]
    nope = stack.cli("roles", "grant", "auditors", "can_fly", "Connections")
    assert nope.returncode == 1 and "no permission can_fly" in nope.stderr
    ok(stack.cli("users", "remove", user))
    assert fab(stack, "GET", f"/users/{user}").status_code == 404


def test_every_change_and_refusal_is_in_the_audit_trail(stack, world):
    """Runs last: the module's changes (the world, set-password, roles, remove) and its refusals."""
    import getpass

    rows = json.loads(ok(stack.cli("audit", "--event", "resource.*", "--format", "json", "--limit", "500",
                                   timeout=60)))
    mine = [r for r in rows if r["event"].split(".")[1] in ("users", "roles", "teams")]
    assert mine and {r["user"] for r in mine} == {getpass.getuser()}  # the OS user who ran the CLI

    def subject(r):
        x = r["extra"]
        return x.get("account") or x.get("role") or x.get("team")

    made = {(r["event"], subject(r)) for r in mine if r["extra"]["outcome"] == "ok"}
    assert {("resource.teams.add", "alpha"), ("resource.teams.add", "beta"), ("resource.users.add", "alice"),
            ("resource.users.add", "bob"), ("resource.users.set-password", "bob"), ("resource.roles.add", "auditors"),
            ("resource.roles.grant", "auditors"), ("resource.users.remove", "bob")} <= made, sorted(made)
    refused = [r for r in mine if r["extra"]["outcome"] == "refused"]
    said = " ".join(r["extra"].get("error", "") for r in refused)
    assert {r["event"] for r in refused} >= {"resource.users.add", "resource.roles.add", "resource.teams.add",
                                              "resource.users.set-roles"}, said
    assert "too weak" in said and "password1234" not in json.dumps(rows)  # why, never the password tried
