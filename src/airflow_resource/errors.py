"""The one error type a user can hit; caught once in cli.main.

Exit 2 ("already so") is raised one way: a command that has nothing to do raises AlreadySo, and
cli.main prints its message like any error. Only a command whose answer is its output (a report, a
listing, JSON a program reads) prints that answer and returns EXIT_ALREADY, because raising would lose
it: `./cli.sh status` of a stopped stack, `./cli.sh backup list` of an empty folder.
"""

# Exit codes of the resource contract.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_ALREADY = 2  # already so / not applicable / not running / not found


class CommandError(Exception):
    """A failure the user can act on: what happened, and what to do next."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = EXIT_ERROR):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code


class AlreadySo(CommandError):
    """Nothing to do: the thing asked for is already the case (exit 2)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, hint, EXIT_ALREADY)
