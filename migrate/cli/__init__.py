"""The command line: a thin click layer over the library.

Each command parses options, calls one library function, and renders the dataclass it returns.
Expected failures (``MigrateError``) are caught once, at the root group's edge (``base.py``),
and printed as one line. One module per command group; importing it registers its commands.
"""

from migrate.cli import (  # noqa: F401
    db,
    demo,
    deploy,
    files,
    instances,
    runbook,
    scan,
    sessions,
    stores,
    switch,
)
from migrate.cli.base import cli

__all__ = ["cli"]
