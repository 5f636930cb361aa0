"""The pure parts of the content commands: --conf/--param parsing, conf checked against a DAG's params,
where `content add` puts a file and which names it refuses, which entry of the dags folder holds a DAG,
dates, and the small text helpers. No stack: what needs one is in tests/integration/test_content.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_resource.api import last_line
from airflow_resource.dags import files, restapi, runs
from airflow_resource.errors import EXIT_ALREADY, EXIT_ERROR, AlreadySo, CommandError

pytestmark = pytest.mark.unit


# ---------------------------------------------------------------- --conf and --param

class TestParseConf:
    def test_nothing_given_is_an_empty_conf(self):
        assert runs.parse_conf(None, None) == {}
        assert runs.parse_conf("", []) == {}

    def test_conf_is_a_json_object(self):
        assert runs.parse_conf('{"rows": 10, "name": "x", "deep": {"a": [1, 2]}}', None) == {
            "rows": 10, "name": "x", "deep": {"a": [1, 2]}}

    def test_conf_that_is_not_json_names_the_column(self):
        with pytest.raises(CommandError) as err:
            runs.parse_conf('{"rows": 10,}', None)
        assert err.value.message == "--conf is not JSON: Expecting property name enclosed in double quotes at column 13"
        assert "--param rows=10" in err.value.hint
        assert err.value.exit_code == EXIT_ERROR

    @pytest.mark.parametrize("conf", ["[1, 2]", '"text"', "10", "null"])
    def test_conf_must_be_an_object(self, conf):
        with pytest.raises(CommandError, match="^--conf must be a JSON object$"):
            runs.parse_conf(conf, None)

    def test_param_values_are_json_when_they_parse_and_text_otherwise(self):
        assert runs.parse_conf(None, ["rows=10", "ratio=0.5", "on=true", "none=null", "name=alice",
                                      "list=[1,2]", "empty="]) == {
            "rows": 10, "ratio": 0.5, "on": True, "none": None, "name": "alice", "list": [1, 2], "empty": ""}

    def test_a_param_value_may_hold_an_equals_sign(self):
        assert runs.parse_conf(None, ["expr=a=b"]) == {"expr": "a=b"}

    def test_params_override_conf_and_add_to_it(self):
        assert runs.parse_conf('{"rows": 10, "name": "x"}', ["rows=20", "extra=1"]) == {
            "rows": 20, "name": "x", "extra": 1}

    @pytest.mark.parametrize("item", ["rows", "=10", ""])
    def test_a_param_without_key_or_equals_is_refused(self, item):
        with pytest.raises(CommandError) as err:
            runs.parse_conf(None, [item])
        assert err.value.message == f"--param {item!r}: expected KEY=VALUE"
        assert err.value.hint == "e.g. --param rows=10"


# ---------------------------------------------------------------- conf against the DAG's params

class TestCheckParams:
    DECLARED = {
        "rows": {"value": 10, "schema": {"type": "integer", "minimum": 1}},
        "name": {"value": None, "schema": {"type": "string"}},
        "note": {"value": None, "schema": {"type": ["string", "null"]}},
        "free": {"value": "anything", "schema": {}},
        "bare": None,
    }

    def test_a_conf_that_fits_has_no_problem(self):
        assert runs.check_params(self.DECLARED, {"name": "alice"}) == []
        assert runs.check_params(self.DECLARED, {"name": "alice", "rows": 3, "note": "n", "free": [1]}) == []

    def test_a_param_without_default_that_allows_no_null_is_required(self):
        assert runs.check_params(self.DECLARED, {}) == ["name: required (no default)"]

    def test_wrong_type_and_out_of_range_are_named_per_param(self):
        problems = runs.check_params(self.DECLARED, {"name": 5, "rows": 0})
        assert problems == ["rows: 0 is less than the minimum of 1", "name: 5 is not of type 'string'"]

    def test_the_default_is_checked_when_conf_leaves_the_param_out(self):
        declared = {"rows": {"value": "ten", "schema": {"type": "integer"}}}
        assert runs.check_params(declared, {}) == ["rows: 'ten' is not of type 'integer'"]

    def test_an_explicit_null_is_checked_against_the_schema_not_called_missing(self):
        assert runs.check_params(self.DECLARED, {"name": None}) == ["name: None is not of type 'string'"]

    def test_formats_are_checked(self):
        declared = {"day": {"value": None, "schema": {"type": "string", "format": "date"}}}
        assert runs.check_params(declared, {"day": "2026-01-05"}) == []
        assert runs.check_params(declared, {"day": "5 Jan"}) == ["day: '5 Jan' is not a 'date'"]

    def test_keys_that_are_not_params_are_not_problems_here(self):
        assert runs.check_params({}, {"whatever": 1}) == []

    @pytest.mark.parametrize("schema, allowed", [
        ({}, True), ({"type": "null"}, True), ({"type": ["integer", "null"]}, True),
        ({"type": "integer"}, False), ({"type": ["integer", "string"]}, False), ({"minimum": 1}, True)])
    def test_allows_null(self, schema, allowed):
        assert runs._allows_null(schema) is allowed


# ---------------------------------------------------------------- where `content add` puts a file

class TestDestination:
    def test_a_file_keeps_its_name(self, make_settings, tmp_path):
        s = make_settings()
        assert files._destination(s, tmp_path / "etl.py", None) == s.dags_dir / "etl.py"
        assert files._destination(s, tmp_path / "bundle.zip", None) == s.dags_dir / "bundle.zip"

    def test_name_gets_the_source_suffix_when_it_lacks_it(self, make_settings, tmp_path):
        s = make_settings()
        assert files._destination(s, tmp_path / "etl.py", "my_pipeline") == s.dags_dir / "my_pipeline.py"
        assert files._destination(s, tmp_path / "etl.py", "my_pipeline.py") == s.dags_dir / "my_pipeline.py"
        assert files._destination(s, tmp_path / "b.zip", "team") == s.dags_dir / "team.zip"
        # a .py source given a .zip name is still a .py file
        assert files._destination(s, tmp_path / "etl.py", "x.zip") == s.dags_dir / "x.zip.py"

    def test_a_folder_keeps_its_name_or_takes_the_given_one_as_is(self, make_settings, tmp_path):
        s = make_settings()
        folder = tmp_path / "team_a"
        folder.mkdir()
        assert files._destination(s, folder, None) == s.dags_dir / "team_a"
        assert files._destination(s, folder, "team_b") == s.dags_dir / "team_b"

    @pytest.mark.parametrize("name, target", [("sub/etl.py", "sub/etl.py"), ("../etl.py", "../etl.py"),
                                              (".hidden.py", ".hidden.py"), ("..", "...py"), ("/abs", "/abs.py")])
    def test_a_name_that_is_not_plain_is_refused(self, make_settings, tmp_path, name, target):
        with pytest.raises(CommandError) as err:
            files._destination(make_settings(), tmp_path / "etl.py", name)
        assert err.value.message == f"--name {target!r} must be a plain file or folder name"  # as it would be placed
        assert err.value.hint == "e.g. --name my_pipeline.py"

    def test_a_hidden_source_name_is_refused_too(self, make_settings, tmp_path):
        with pytest.raises(CommandError, match="must be a plain file or folder name"):
            files._destination(make_settings(), tmp_path / ".secret.py", None)


class TestAddRefusesBeforeTouchingTheStack:
    """These checks come before any REST call or validation: no stack is running here."""

    def test_a_missing_source(self, make_settings, tmp_path):
        with pytest.raises(CommandError) as err:
            files.add(make_settings(), tmp_path / "nope.py", None, False, wait=False, timeout=1)
        assert err.value.message == f"{tmp_path / 'nope.py'} does not exist"

    def test_a_file_that_is_not_a_dag_file(self, make_settings, tmp_path):
        text = tmp_path / "notes.txt"
        text.write_text("hello")
        with pytest.raises(CommandError) as err:
            files.add(make_settings(), text, None, False, wait=False, timeout=1)
        assert err.value.message == "notes.txt is not a DAG file"

    def test_an_existing_destination_needs_force(self, make_settings, tmp_path):
        s = make_settings()
        s.dags_dir.mkdir(parents=True, exist_ok=True)
        (s.dags_dir / "etl.py").write_text("old")
        source = tmp_path / "etl.py"
        source.write_text("new")
        with pytest.raises(AlreadySo) as err:
            files.add(s, source, None, False, wait=False, timeout=1)
        assert err.value.message == f"etl.py already exists in {s.dags_dir}"
        assert err.value.hint == "add --force to replace it" and err.value.exit_code == EXIT_ALREADY
        assert (s.dags_dir / "etl.py").read_text() == "old"

    def test_an_existing_destination_under_another_name(self, make_settings, tmp_path):
        s = make_settings()
        s.dags_dir.mkdir(parents=True, exist_ok=True)
        (s.dags_dir / "renamed.py").write_text("old")
        source = tmp_path / "etl.py"
        source.write_text("new")
        with pytest.raises(AlreadySo, match="^renamed.py already exists"):
            files.add(s, source, "renamed", False, wait=False, timeout=1)


# ---------------------------------------------------------------- the dags folder

class TestDagsFolder:
    def test_same_place_is_the_file_or_something_inside_it(self, tmp_path):
        dest = tmp_path / "dags" / "team"
        assert files._same_place(str(dest), dest)
        assert files._same_place(str(dest / "sub" / "etl.py"), dest)
        assert not files._same_place(str(dest) + "_b/etl.py", dest)  # a sibling with the same prefix
        assert not files._same_place(str(tmp_path / "dags" / "other.py"), dest)
        assert not files._same_place("", dest)

    def test_file_in_dags_dir_is_its_top_level_entry(self, make_settings):
        s = make_settings()
        d = s.dags_dir
        assert files._file_in_dags_dir(s, d / "etl.py") == d / "etl.py"
        assert files._file_in_dags_dir(s, d / "team" / "sub" / "etl.py") == d / "team"
        assert files._file_in_dags_dir(s, d / "bundle.zip" / "inner" / "dag.py") == d / "bundle.zip"

    def test_a_file_outside_the_dags_folder_is_none(self, make_settings, tmp_path):
        s = make_settings()
        assert files._file_in_dags_dir(s, tmp_path / "elsewhere" / "etl.py") is None
        assert files._file_in_dags_dir(s, tmp_path / "elsewhere" / "bundle.zip" / "dag.py") is None
        assert files._file_in_dags_dir(s, Path("")) is None

    def test_commit_renames_a_file_into_place(self, tmp_path):
        staged, dest = tmp_path / "staging" / "etl.py", tmp_path / "dags" / "etl.py"
        staged.parent.mkdir()
        dest.parent.mkdir()
        staged.write_text("new")
        dest.write_text("old")
        files._commit(staged, dest)
        assert dest.read_text() == "new" and not staged.exists()

    def test_commit_replaces_a_folder_by_moving_the_old_one_aside(self, tmp_path):
        staged, dest = tmp_path / "staging" / "team", tmp_path / "dags" / "team"
        (staged / "sub").mkdir(parents=True)
        (staged / "sub" / "new.py").write_text("new")
        dest.mkdir(parents=True)
        (dest / "old.py").write_text("old")
        files._commit(staged, dest)
        assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == ["sub", "sub/new.py"]
        assert (tmp_path / "staging" / "team.old" / "old.py").read_text() == "old"  # removed with the staging


# ---------------------------------------------------------------- dates and text

class TestSmallHelpers:
    @pytest.mark.parametrize("day, iso", [("2026-01-05", "2026-01-05"), ("2026-01-05T10:11:12", "2026-01-05"),
                                          ("2026-01-05 23:59", "2026-01-05"), ("20260105", "2026-01-05")])
    def test_iso_is_the_date(self, day, iso):
        assert runs._iso(day) == iso

    @pytest.mark.parametrize("day", ["yesterday", "2026-13-01", "05/01/2026", ""])
    def test_iso_refuses_what_is_not_a_date(self, day):
        with pytest.raises(CommandError) as err:
            runs._iso(day)
        assert err.value.message == f"{day!r} is not a date" and err.value.hint == "use YYYY-MM-DD"

    def test_short_time(self):
        assert files._short_time(None) == "-"
        assert files._short_time("") == "-"
        assert files._short_time("2026-01-05T10:11:12.345678+00:00") == "2026-01-05 10:11:12"

    def test_colour_marks_known_states_only(self):
        assert runs._colour("success") == "[green]success[/]"
        assert runs._colour("failed") == "[red]failed[/]"
        assert runs._colour("upstream_failed") == "[red]upstream_failed[/]"
        assert runs._colour("none") == "none"

    def test_last_line_of_a_stack_trace(self):
        assert last_line("Traceback (most recent call last):\n  File x\nModuleNotFoundError: y\n\n") == (
            "ModuleNotFoundError: y")
        assert last_line(None) == "" and last_line("  \n ") == ""

    def test_a_path_segment_is_quoted_whole(self):
        assert restapi.q("my dag/v2") == "my%20dag%2Fv2"
        assert restapi.q("scheduled__2026-01-05T00:00:00+00:00") == "scheduled__2026-01-05T00%3A00%3A00%2B00%3A00"
