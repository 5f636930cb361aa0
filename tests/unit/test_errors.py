"""errors: the one error type, and its exit codes."""

from __future__ import annotations

import pytest

from airflow_resource import errors

pytestmark = pytest.mark.unit


def test_exit_codes():
    assert (errors.EXIT_OK, errors.EXIT_ERROR, errors.EXIT_ALREADY) == (0, 1, 2)


def test_command_error():
    exc = errors.CommandError("it broke", "do this")
    assert exc.message == "it broke" and str(exc) == "it broke"
    assert exc.hint == "do this"
    assert exc.exit_code == errors.EXIT_ERROR
    assert errors.CommandError("x").hint is None
    assert errors.CommandError("x", exit_code=7).exit_code == 7


def test_already_so_is_a_command_error_with_exit_2():
    exc = errors.AlreadySo("not running", "start it")
    assert isinstance(exc, errors.CommandError)
    assert exc.exit_code == errors.EXIT_ALREADY
    assert (exc.message, exc.hint) == ("not running", "start it")
    with pytest.raises(errors.CommandError):
        raise exc
