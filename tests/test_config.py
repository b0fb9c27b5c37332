"""[tool.migrate] in a project's pyproject.toml: read, resolved, and refused when malformed."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate import config
from migrate.errors import UsageError


def test_paths_resolve_against_the_pyproject_folder(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.migrate]\nscript_location = "db/migrations"\n'
        '[tool.migrate.switch]\ndrop = ["UPLOAD_FOLDER"]\n')
    found = config.load(tmp_path)
    assert found.path("script_location") == (tmp_path / "db/migrations").resolve()
    assert found.section("switch") == {"drop": ["UPLOAD_FOLDER"]}
    assert found.path("alembic_ini") is None


def test_no_pyproject_is_an_empty_config(tmp_path: Path) -> None:
    assert config.load(tmp_path).table == {}


def test_malformed_toml_is_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.migrate\n")
    with pytest.raises(UsageError, match="pyproject.toml is not valid TOML"):
        config.load(tmp_path)
