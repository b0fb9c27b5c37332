"""The command line: a thin click layer over the library.

Each command parses options, calls one library function, and renders the dataclass it returns.
Expected failures (``MigrateError``) are caught once, at the root group's edge (``base.py``),
and printed as one line. One module per command group; importing it registers its commands.
Only the module of the command that runs is imported (``base.COMMANDS``), so start-up stays
short; ``cli.load_all()`` imports them all for a tool that walks ``cli.commands``.
"""

from migrate.cli.base import cli

__all__ = ["cli"]
