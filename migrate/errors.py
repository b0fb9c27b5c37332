"""The one exception family the CLI catches at its edge (alembic style).

Library code raises these with a message that names the problem and the fix; ``cli.py``
prints that one line and exits with ``exit_code``. ``--debug`` shows the traceback.
"""


class MigrateError(Exception):
    """An expected failure: one clear line for the user, never a traceback."""

    exit_code = 2


class UsageError(MigrateError):
    """Bad input: a wrong option, a missing file, a malformed URL."""

    exit_code = 2


class ConnectionFailure(MigrateError):
    """A store or instance could not be reached."""

    exit_code = 2


class CheckFailed(MigrateError):
    """A check ran and found differences (verify, journey, scan gate)."""

    exit_code = 1
