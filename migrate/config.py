"""The project's own settings for migrate: the ``[tool.migrate]`` table of its pyproject.toml.

A team keeps what is particular to its app there (its alembic environment, its own config
keys), so every command runs on its app with no option to remember::

    [tool.migrate]
    script_location = "migrations"      # or alembic_ini = "alembic.ini"
    baseline = "0001"                   # stamp a database the before-app made without alembic

    [tool.migrate.switch]
    set = { UPLOAD_BUCKET = "{bucket}" }
    drop = ["UPLOAD_FOLDER"]

Paths in it are relative to the pyproject.toml's folder.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrate.errors import UsageError

MAX_BYTES = 1 << 20  # a pyproject.toml is small; a bigger file is not one


@dataclass
class ToolConfig:
    """``[tool.migrate]`` as read, and the folder its relative paths start from."""

    root: Path
    table: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None  # the pyproject.toml it came from (None: there was none)

    def get(self, key: str, default: Any = None) -> Any:
        return self.table.get(key, default)

    def path(self, key: str) -> Path | None:
        """A path setting, resolved against the pyproject's folder (None when unset)."""
        raw = self.table.get(key)
        if raw is None:
            return None
        if not isinstance(raw, str) or not raw:
            raise UsageError(f"[tool.migrate] {key} in {self.source} must be a path string")
        return (self.root / raw).resolve()

    def section(self, name: str) -> dict[str, Any]:
        """A sub-table such as ``[tool.migrate.switch]`` (empty when absent)."""
        value = self.table.get(name, {})
        if not isinstance(value, dict):
            raise UsageError(f"[tool.migrate.{name}] in {self.source} must be a table")
        return value


def load(project: str | os.PathLike[str] | None = None) -> ToolConfig:
    """``[tool.migrate]`` from ``project``/pyproject.toml (default: the current folder).

    No pyproject.toml, or one without the table, is an empty config; a malformed one is a
    UsageError naming the file and the line.
    """
    root = Path(project) if project is not None else Path.cwd()
    if root.is_file():
        root, candidate = root.parent, root
    else:
        candidate = root / "pyproject.toml"
    if not candidate.is_file():
        return ToolConfig(root.resolve())
    try:
        with candidate.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {candidate}: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise UsageError(f"{candidate} is over {MAX_BYTES} bytes: not a pyproject.toml")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{candidate} is not valid TOML ({exc}): fix it or pass the "
                         "options on the command line") from None
    table = data.get("tool", {}).get("migrate", {})
    if not isinstance(table, dict):
        raise UsageError(f"[tool.migrate] in {candidate} must be a table")
    return ToolConfig(root.resolve(), table, candidate)
