"""Users, roles and teams (access/), the password policy (config/passwords.py) and generated passwords, with
the FAB REST API replaced by an in-memory fake that records every write."""

from __future__ import annotations

import io
import math
import shlex
import string
from urllib.parse import quote

import pytest

from airflow_resource.access import names, prompt, roles, teams, users
from airflow_resource.cli.parser import PARSER
from airflow_resource.config import passwords, secrets
from airflow_resource.errors import EXIT_ALREADY, AlreadySo, CommandError

pytestmark = pytest.mark.unit

STRONG = "tulip-Granite-7-orbit"
USER_ROLE = [("can_read", "DAGs"), ("can_edit", "DAGs"), ("can_delete", "DAGs"), ("menu_access", "DAGs"),
             ("can_read", "DAG Runs"), ("can_create", "DAG Runs"), ("can_read", "Task Logs"), ("can_read", "XComs"),
             ("can_create", "Assets"), ("can_read", "Assets"), ("can_read", "DAG:legacy")]


# ---------------------------------------------------------------- the password policy

@pytest.mark.parametrize("weak, rule", [
    ("short-1A", "at least 12"), ("password1234", "well-known"), ("Password2024!", "well-known"),
    ("!!airflow12345", "well-known"), ("qwertyuiop12", "well-known"), ("aaaaaaaaaaaaaaaa", "different characters"),
    ("abababab1212", "different characters"), ("jane.doe-Tulip-77", "user name"), ("tulip-Granite\n7orbit", "control"),
    ("x" * 300 + "abcdefg", "at most"),
])
def test_weak_passwords_are_refused_naming_the_rule(weak, rule):
    found = passwords.problems(weak, "jane.doe")
    assert any(rule in p for p in found), found
    with pytest.raises(CommandError) as exc:
        passwords.check(weak, "jane.doe")
    assert weak not in exc.value.message and weak not in (exc.value.hint or "")


@pytest.mark.parametrize("good", [STRONG, "correct horse battery", "Zq8#mW2!rT5&", "a1b2c3d4e5f6g7"])
def test_strong_passwords_pass(good):
    assert passwords.problems(good, "jane") == []
    passwords.check(good, "jane")


def test_generated_passwords_are_shell_and_url_safe_never_a_flag_and_strong():
    samples = [secrets._token() for _ in range(2000)]
    assert len(set(samples)) == len(samples)
    for pw in samples:
        assert not pw.startswith("-") and pw[0] in string.ascii_letters
        assert set(pw) <= set(string.ascii_letters + string.digits)
        assert shlex.quote(pw) == pw and quote(pw, safe="") == pw
        assert passwords.problems(pw, "admin") == []
    # Entropy: the first character from 52 letters, the rest from 62 letters and digits.
    bits = math.log2(52) + (secrets.TOKEN_LENGTH - 1) * math.log2(len(secrets.TOKEN_ALPHABET))
    assert bits >= 128
    # ... and the generator really uses the whole alphabet at every position but the first.
    assert set("".join(p[1:] for p in samples)) == set(secrets.TOKEN_ALPHABET)


def test_every_generated_secret_field_is_safe(tmp_path):
    sec, _ = secrets.ensure(tmp_path / "s.env", environ={})
    for name in ("admin_password", "postgres_password", "postgres_superuser_password", "redis_password",
                 "flower_password", "data_db_password", "housekeeper_password"):
        value = getattr(sec, name)
        assert value[0].isalpha() and value.isalnum() and len(value) == secrets.TOKEN_LENGTH, name


def test_a_weak_admin_password_override_is_refused_and_nothing_written(tmp_path):
    path = tmp_path / "s.env"
    with pytest.raises(CommandError, match="APACHE_AIRFLOW_ADMIN_PASSWORD is too weak"):
        secrets.ensure(path, environ={"APACHE_AIRFLOW_ADMIN_PASSWORD": "admin123"})
    assert not path.exists()
    secrets.ensure(path, environ={})
    with pytest.raises(CommandError, match="contains the user name"):
        secrets.load(path, environ={"APACHE_AIRFLOW_ADMIN_PASSWORD": "ops-team-lead-Tulip-9",
                                    "APACHE_AIRFLOW_ADMIN_USER": "team-lead"})
    assert secrets.load(path, environ={"APACHE_AIRFLOW_ADMIN_PASSWORD": STRONG}).admin_password == STRONG


# ---------------------------------------------------------------- names

BAD_NAMES = ["a;rm -rf /", "x' OR '1'='1", "$(id)", "`id`", "a b", "a|b", "a&b", "../etc", "a/b", "-rf", "a\nb",
             "a\"b", "a*", "", "ümlaut", "a" * 65]


@pytest.mark.parametrize("bad", BAD_NAMES)
@pytest.mark.parametrize("kind", ["user", "role", "team"])
def test_metacharacters_in_names_are_refused_with_the_allowed_characters(kind, bad):
    with pytest.raises(CommandError) as exc:
        getattr(names, kind)(bad)
    assert f"{kind} name" in exc.value.message and "digits" in exc.value.hint


def test_ordinary_names_pass():
    assert names.user("jane.doe@example.org") and names.user("svc_etl-2")
    assert names.role("team-analytics") and names.role("Viewer")
    assert names.team("analytics") and names.team("data_eng-2")
    for bad in ("Analytics", "2fast", "a.b"):  # a team is a folder and part of a role name: stricter
        with pytest.raises(CommandError):
            names.team(bad)


# ---------------------------------------------------------------- reading a password

def test_a_password_file_loses_one_line_break_and_is_checked(tmp_path):
    f = tmp_path / "pw"
    f.write_text(STRONG + "\n")
    assert prompt.read("jane", str(f), False) == STRONG
    f.write_text("short\n")
    with pytest.raises(CommandError, match="too weak"):
        prompt.read("jane", str(f), False)
    f.write_text("\n")
    with pytest.raises(CommandError, match="holds no password"):
        prompt.read("jane", str(f), False)


def test_a_password_from_stdin_and_no_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(STRONG + "\r\n"))
    assert prompt.read("jane", None, True) == STRONG
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(CommandError, match="no terminal") as exc:
        prompt.read("jane", None, False)
    assert "--password-file FILE or --password-stdin" in exc.value.hint


def test_the_prompt_asks_twice(monkeypatch):
    answers = iter([STRONG, STRONG + "x"])
    monkeypatch.setattr(prompt.sys, "stdin", type("TTY", (), {"isatty": staticmethod(lambda: True)})())
    monkeypatch.setattr(prompt.getpass, "getpass", lambda _p: next(answers))
    with pytest.raises(CommandError, match="differ"):
        prompt.read("jane", None, False)


def test_no_command_takes_a_password_on_its_command_line():
    for argv in (["users", "add", "jane", "--password", STRONG], ["users", "set-password", "jane", STRONG]):
        with pytest.raises(SystemExit):
            PARSER.parse_args(argv)


# ---------------------------------------------------------------- a fake FAB API


class FakeFab:
    """/roles, /users, /permissions and /api/v2/dags in memory; writes recorded."""

    def __init__(self, dags=()):
        self.roles = {"Admin": set(), "Viewer": {("can_read", "DAGs")}, "User": set(USER_ROLE), "Public": set()}
        self.users = {"admin": {"username": "admin", "email": "admin@localhost", "roles": [{"name": "Admin"}]}}
        self.dags = list(dags)
        self.resources = {r for _a, r in USER_ROLE} | {f"DAG:{d['dag_id']}" for d in self.dags} | {"Connections"}
        self.writes: list[tuple] = []

    def items(self, path, *keys):
        if path == "/roles":
            return [{"name": n, "actions": _body(p)} for n, p in self.roles.items()]
        if path == "/users":
            return list(self.users.values())
        assert path == "/permissions"
        return _body({(a, r) for r in self.resources for a in ("can_read", "can_edit")})

    def one(self, path, name):
        if path == "/roles":
            return {"name": name, "actions": _body(self.roles[name])} if name in self.roles else None
        return self.users.get(name)

    def core(self):
        return self

    def paged(self, path, key, params=None):
        assert path == "/dags" and params == {"exclude_stale": "false"}
        return self.dags

    def post(self, path, body):
        self.writes.append(("POST", path, body))
        if path == "/roles":
            self.roles[body["name"]] = _pairs(body["actions"])
        else:
            self.users[body["username"]] = {**body, "password": None}

    def patch(self, path, body, params=None):
        self.writes.append(("PATCH", path, body, params))
        kind, name = path.strip("/").split("/")
        if kind == "roles":
            self.roles[name] = _pairs(body["actions"])
        elif "roles" in body:
            self.users[name]["roles"] = body["roles"]

    def delete(self, path):
        self.writes.append(("DELETE", path))
        kind, name = path.strip("/").split("/")
        (self.roles if kind == "roles" else self.users).pop(name)


def _body(perms):
    return [{"action": {"name": a}, "resource": {"name": r}} for a, r in sorted(perms)]


def _pairs(items):
    return {(p["action"]["name"], p["resource"]["name"]) for p in items}


@pytest.fixture
def fab(monkeypatch, make_settings, tmp_path):
    dags_dir = tmp_path / "dags"
    dags_dir.mkdir()
    s = make_settings(dags_dir=str(dags_dir))
    fake = FakeFab(dags=[
        {"dag_id": "a_etl", "relative_fileloc": "teams/alpha/a_etl.py", "bundle_name": "dags-folder"},
        {"dag_id": "a_zip", "relative_fileloc": "teams/alpha/bundle.zip/inner.py", "bundle_name": "dags-folder"},
        {"dag_id": "b_report", "relative_fileloc": "teams/beta/sub/b_report.py", "bundle_name": "dags-folder"},
        {"dag_id": "shared", "relative_fileloc": "shared.py", "bundle_name": "dags-folder"},
        {"dag_id": "fresh", "relative_fileloc": "teams/alpha/fresh.py", "bundle_name": "dags-folder"},
    ])
    fake.resources.discard("DAG:fresh")  # not parsed yet: no FAB resource
    for module in (users, roles, teams):
        monkeypatch.setattr(module, "fab_api", lambda _s: fake)
    return s, fake


def password(_user):
    return STRONG


# ---------------------------------------------------------------- deriving team permissions

def test_a_dags_team_is_the_folder_under_teams(tmp_path):
    d = tmp_path
    assert teams.team_of({"relative_fileloc": "teams/alpha/x.py"}, d) == "alpha"
    assert teams.team_of({"relative_fileloc": "teams/alpha/z.zip/x.py"}, d) == "alpha"
    assert teams.team_of({"relative_fileloc": "teams/x.py"}, d) is None  # a file directly in teams/: no team
    assert teams.team_of({"relative_fileloc": "other/alpha/x.py"}, d) is None
    assert teams.team_of({"fileloc": str(d / "teams/beta/y.py")}, d) == "beta"
    assert teams.team_of({"relative_fileloc": "teams/alpha/x.py", "bundle_name": "git-repo"}, d) is None


def test_a_team_role_is_user_without_rights_on_every_dag_plus_its_own_dags(tmp_path):
    base = teams.base_permissions(USER_ROLE)
    assert not {("can_read", "DAGs"), ("can_edit", "DAGs"), ("can_delete", "DAGs"), ("can_create", "Assets"),
                ("can_read", "Assets")} & base
    assert ("menu_access", "DAGs") in base and ("can_read", "XComs") in base
    assert not any(r.startswith("DAG:") for _a, r in base)
    dags = FakeFab(dags=[]).dags + [{"dag_id": "a1", "relative_fileloc": "teams/alpha/a1.py"},
                                    {"dag_id": "b1", "relative_fileloc": "teams/beta/b1.py"},
                                    {"dag_id": "c1", "relative_fileloc": "teams/gamma/c1.py"}]
    wanted, owned, pending = teams.derive(base, dags, ["alpha", "beta"], tmp_path, {"DAG:a1", "DAG:b1", "DAG:c1"})
    assert owned == {"alpha": ["a1"], "beta": ["b1"]} and pending == []
    assert wanted["team-alpha"] - base == {("can_read", "DAG:a1"), ("can_edit", "DAG:a1")}
    assert wanted["team-beta"] - base == {("can_read", "DAG:b1"), ("can_edit", "DAG:b1")}


def test_sync_sets_each_team_role_exactly_and_leaves_other_roles_alone(fab):
    s, fake = fab
    fake.roles["team-alpha"] = {("can_read", "DAG:b_report"), ("can_read", "DAGs")}  # stale and too wide
    fake.roles["team-beta"] = set()
    viewer_before = set(fake.roles["Viewer"])
    owned = teams.sync(s)
    assert owned == {"alpha": ["a_etl", "a_zip"], "beta": ["b_report"]}
    alpha = fake.roles["team-alpha"]
    assert {r for _a, r in alpha if r.startswith("DAG:")} == {"DAG:a_etl", "DAG:a_zip"}
    assert ("can_read", "DAGs") not in alpha and ("can_read", "DAG:b_report") not in alpha
    assert fake.roles["Viewer"] == viewer_before
    assert {w[1] for w in fake.writes} == {"/roles/team-alpha", "/roles/team-beta"}
    fake.writes.clear()
    teams.sync(s)  # nothing changed: nothing written
    assert fake.writes == []


def test_teams_list_tells_whether_each_role_is_in_sync(fab):
    s, fake = fab
    fake.roles["team-alpha"] = set()
    fake.roles["team-beta"] = set()
    teams.sync(s)
    listed = {t["team"]: t for t in teams.list_teams(s)}
    assert listed["alpha"]["dags"] == ["a_etl", "a_zip"] and listed["alpha"]["in_sync"]
    fake.dags.append({"dag_id": "b_new", "relative_fileloc": "teams/beta/b_new.py"})
    fake.resources.add("DAG:b_new")
    listed = {t["team"]: t for t in teams.list_teams(s)}
    assert listed["alpha"]["in_sync"] and not listed["beta"]["in_sync"]
    assert listed["beta"]["folder"] == str(s.dags_dir / "teams" / "beta")


def test_teams_add_makes_the_folder_and_the_role_and_refuses_a_duplicate(fab):
    s, fake = fab
    teams.add(s, "alpha")
    assert (s.dags_dir / "teams" / "alpha").is_dir()
    assert {r for _a, r in fake.roles["team-alpha"] if r.startswith("DAG:")} == {"DAG:a_etl", "DAG:a_zip"}
    writes = len(fake.writes)
    with pytest.raises(AlreadySo):
        teams.add(s, "alpha")
    with pytest.raises(CommandError, match="team name"):
        teams.add(s, "x;drop")
    assert len(fake.writes) == writes


def test_team_membership(fab):
    s, fake = fab
    teams.add(s, "alpha")
    users.add(s, "jane", password, ["Viewer"], None, None, None)
    teams.add_user(s, "alpha", "jane")
    assert [r["name"] for r in fake.users["jane"]["roles"]] == ["Viewer", "team-alpha"]
    with pytest.raises(AlreadySo):
        teams.add_user(s, "alpha", "jane")
    with pytest.raises(CommandError) as exc:
        teams.add_user(s, "nosuch", "jane")
    assert exc.value.exit_code == EXIT_ALREADY and "alpha" in exc.value.hint
    with pytest.raises(CommandError, match="resource's admin"):
        teams.add_user(s, "alpha", "admin")
    teams.remove_user(s, "alpha", "jane")
    assert [r["name"] for r in fake.users["jane"]["roles"]] == ["Viewer"]
    teams.remove(s, "alpha")
    assert "team-alpha" not in fake.roles and not (s.dags_dir / "teams" / "alpha").exists()


# ---------------------------------------------------------------- users and roles: refusals change nothing

def test_users_add_and_its_refusals(fab):
    s, fake = fab
    users.add(s, "jane", password, ["Viewer"], None, None, None)
    assert fake.writes[-1][2]["password"] == STRONG and fake.writes[-1][2]["email"] == "jane@localhost"
    n = len(fake.writes)
    with pytest.raises(AlreadySo):
        users.add(s, "jane", password, ["Viewer"], None, None, None)
    with pytest.raises(CommandError, match="no role named 'Nope'") as exc:
        users.add(s, "joe", password, ["Nope"], None, None, None)
    assert "Viewer" in exc.value.hint
    with pytest.raises(CommandError, match="user name"):
        users.add(s, "joe;id", password, [], None, None, None)

    def weak(user):
        return prompt.passwords.check("changeme1234", user)
    with pytest.raises(CommandError, match="too weak"):
        users.add(s, "joe", weak, [], None, None, None)
    with pytest.raises(CommandError, match="already jane's"):
        users.add(s, "joe", password, [], "jane@localhost", None, None)
    assert len(fake.writes) == n and "joe" not in fake.users


def test_the_resources_own_users_are_not_edited(fab):
    """The admin (settings admin_user) and the housekeeper (resource-housekeeper)."""
    s, fake = fab
    for call in (lambda: users.remove(s, "admin"), lambda: users.set_password(s, "admin", password),
                 lambda: users.set_roles(s, "admin", ["Viewer"]), lambda: users.remove(s, "resource-housekeeper")):
        with pytest.raises(CommandError):
            call()
    assert fake.writes == []


def test_set_roles_and_unknown_users(fab):
    s, fake = fab
    users.add(s, "jane", password, ["Viewer"], None, None, None)
    users.set_roles(s, "jane", ["User", "Viewer"])
    assert fake.writes[-1][3] == {"update_mask": "roles"}
    with pytest.raises(AlreadySo):
        users.set_roles(s, "jane", ["Viewer", "User"])
    with pytest.raises(CommandError) as exc:
        users.remove(s, "ghost")
    assert exc.value.exit_code == EXIT_ALREADY and "jane" in exc.value.hint
    users.set_password(s, "jane", password)
    assert fake.writes[-1][2] == {"password": STRONG} and fake.writes[-1][3] == {"update_mask": "password"}


def test_roles_add_and_grant(fab):
    s, fake = fab
    roles.add(s, "ops", "Viewer")
    assert fake.roles["ops"] == fake.roles["Viewer"]
    roles.grant(s, "ops", "can_read", "Connections")
    assert ("can_read", "Connections") in fake.roles["ops"]
    n = len(fake.writes)
    with pytest.raises(AlreadySo):
        roles.grant(s, "ops", "can_read", "Connections")
    with pytest.raises(CommandError, match="no permission"):
        roles.grant(s, "ops", "can_fly", "Connections")
    with pytest.raises(CommandError, match="team's role"):
        roles.grant(s, "team-alpha", "can_read", "Connections")
    with pytest.raises(CommandError, match="team's role"):
        roles.add(s, "team-x", None)
    with pytest.raises(AlreadySo):
        roles.add(s, "ops", None)
    assert len(fake.writes) == n



def test_content_remove_takes_the_entry_in_a_teams_folder_never_the_folder(make_settings, tmp_path):
    from airflow_resource.dags import files

    s = make_settings(dags_dir=str(tmp_path / "dags"))
    d = s.dags_dir
    assert files._file_in_dags_dir(s, d / "teams" / "alpha" / "etl.py") == d / "teams" / "alpha" / "etl.py"
    assert files._file_in_dags_dir(s, d / "teams" / "alpha" / "pkg" / "sub" / "x.py") == d / "teams" / "alpha" / "pkg"
    assert files._file_in_dags_dir(s, d / "teams" / "alpha" / "b.zip" / "x.py") == d / "teams" / "alpha" / "b.zip"
    assert files._file_in_dags_dir(s, d / "plain.py") == d / "plain.py"
    assert files._destination(s, tmp_path / "etl.py", None, d / "teams" / "alpha") == d / "teams" / "alpha" / "etl.py"
