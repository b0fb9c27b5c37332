"""`migrate db upgrade` / `downgrade` on a database the before-app made: SQLite always,
PostgreSQL when DATABASE_URL points at one (a fresh database per test)."""

from __future__ import annotations

import json
import os
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from migrate.cli import cli
from migrate.keys import object_key

ROOT = Path(__file__).resolve().parent.parent
NFD_NAME = unicodedata.normalize("NFD", "Résumé.pdf")
AVATAR = "avatars/1/me.png"
FILE_PATH = "files/0123456789abcdef0123456789abcdef/report 2024.pdf"


@pytest.fixture(autouse=True)
def repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """`migrate db` finds the shop's alembic history in the repo's [tool.migrate]."""
    monkeypatch.chdir(ROOT)


@pytest.fixture(params=["sqlite", "postgresql"])
def before_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database as the before-app leaves it: its tables, no alembic, local paths stored."""
    from sample_stateful_app.db import init_db

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shop.db'}"
        admin = None
    else:
        base = os.environ.get("DATABASE_URL", "")
        if not base.startswith("postgresql"):
            pytest.skip("DATABASE_URL does not point at PostgreSQL (CI sets it)")
        name = f"migrate_dbup_{uuid.uuid4().hex[:12]}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(base).set(database=name).render_as_string(hide_password=False)
    init_db(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE users SET avatar_path = :p WHERE username = 'alice'"),
                     {"p": AVATAR})
        conn.execute(text("UPDATE users SET avatar_path = :p WHERE username = 'bob'"),
                     {"p": f"avatars/2/{NFD_NAME}"})
        conn.execute(text("INSERT INTO files (id, user_id, filename, size, path) VALUES "
                          "(:i, 1, 'report 2024.pdf', 10, :p)"),
                     {"i": "0123456789abcdef0123456789abcdef", "p": FILE_PATH})
    engine.dispose()
    yield url
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def rows(url: str) -> tuple[set[str], set[str], dict[str, str], str | None]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            user_cols = {c["name"] for c in inspect(conn).get_columns("users")}
            file_cols = {c["name"] for c in inspect(conn).get_columns("files")}
            col = "avatar_key" if "avatar_key" in user_cols else "avatar_path"
            fcol = "key" if "key" in file_cols else "path"
            values = dict(conn.execute(text(f"SELECT username, {col} FROM users")).all())
            values["file"] = conn.execute(text(f'SELECT "{fcol}" FROM files')).scalar()
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar() \
                if "alembic_version" in inspect(conn).get_table_names() else None
            return user_cols, file_cols, values, version
    finally:
        engine.dispose()


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_upgrade_stamps_then_turns_paths_into_the_export_keys_and_downgrade_undoes_it(
        before_db: str) -> None:
    dry = run("db", "upgrade", "--database-url", before_db, "--prefix", "shop", "--dry-run",
              "--json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["rows"]["avatar"] == 2 and rows(before_db)[3] is None

    result = run("db", "upgrade", "--database-url", before_db, "--prefix", "shop", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["stamped"] is True and data["before"] is None and data["after"] == "0003"
    assert data["target"] == "0003" and data["state"].startswith("contracted")
    user_cols, file_cols, values, version = rows(before_db)
    assert "avatar_key" in user_cols and "avatar_path" not in user_cols
    assert "key" in file_cols and "path" not in file_cols and version == "0003"
    # Exactly the keys export-files gave those files (one function, NFC, under the prefix).
    assert values["alice"] == object_key(AVATAR, "shop") == "shop/avatars/1/me.png"
    assert values["bob"] == object_key(f"avatars/2/{NFD_NAME}", "shop")
    assert unicodedata.is_normalized("NFC", values["bob"])
    assert values["file"] == f"shop/{FILE_PATH}"

    again = run("db", "upgrade", "--database-url", before_db, "--prefix", "shop")
    assert again.exit_code == 0 and rows(before_db)[2] == values  # already at head: no-op

    down = run("db", "downgrade", "--revision", "0001", "--database-url", before_db, "--prefix",
               "shop")
    assert down.exit_code == 0, down.output
    user_cols, file_cols, values, version = rows(before_db)
    assert "avatar_path" in user_cols and "path" in file_cols and version == "0001"
    assert values["alice"] == AVATAR and values["file"] == FILE_PATH
    assert values["bob"] == unicodedata.normalize("NFC", f"avatars/2/{NFD_NAME}")


def test_upgrade_without_a_prefix_matches_the_after_app_default_keys(before_db: str) -> None:
    from migrate.runbook.db import upgrade

    result = upgrade(before_db)
    assert result.after == "0003" and result.rows["file"] == 1
    assert rows(before_db)[2]["alice"] == AVATAR  # the after-app's own avatars/<uid>/<name>


def test_unreachable_or_missing_database_is_one_clear_line(tmp_path: Path) -> None:
    url = "postgresql+psycopg://shop:sekret-pw@127.0.0.1:1/shop"
    result = CliRunner().invoke(cli, ["db", "upgrade", "--database-url", url])
    assert result.exit_code == 2
    assert "cannot open the database" in result.output and "sekret-pw" not in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["db", "upgrade"], env={"DATABASE_URL": ""})
    assert result.exit_code == 2 and "--database-url" in result.output


def test_revision_0002_expands_and_the_json_says_where_the_database_is(before_db: str) -> None:
    dry = run("db", "upgrade", "--database-url", before_db, "--revision", "0002", "--dry-run",
              "--json")
    assert dry.exit_code == 0, dry.output
    data = json.loads(dry.output)
    assert (data["before"], data["after"], data["target"]) == (None, None, "0002")
    assert data["dry_run"] is True and data["stamped"] is True and rows(before_db)[3] is None

    result = run("db", "upgrade", "--database-url", before_db, "--revision", "0002",
                 "--prefix", "shop", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["before"], data["after"], data["target"]) == (None, "0002", "0002")
    assert data["state"].startswith("expanded")
    user_cols, file_cols, _, version = rows(before_db)
    # Both columns, side by side: before- and after-instances share this database.
    assert {"avatar_path", "avatar_key"} <= user_cols and {"path", "key"} <= file_cols
    assert version == "0002"
    dry = run("db", "upgrade", "--database-url", before_db, "--dry-run")
    assert dry.exit_code == 0 and "is at 0002: expanded" in dry.output
    assert "upgrading to 0003" in dry.output

    # Already past it, or a contract with another prefix: one clear line, nothing changed.
    result = run("db", "upgrade", "--database-url", before_db, "--revision", "0001")
    assert result.exit_code == 2 and "is at 0002, past 0001" in result.output
    result = run("db", "upgrade", "--database-url", before_db, "--revision", "nope")
    assert result.exit_code == 2 and "unknown revision 'nope'" in result.output
    result = run("db", "upgrade", "--database-url", before_db, "--prefix", "other")
    assert result.exit_code == 2 and "pass --prefix 'shop'" in result.output
    assert "Traceback" not in result.output and rows(before_db)[3] == "0002"

    result = run("db", "upgrade", "--database-url", before_db, "--prefix", "shop/")
    assert result.exit_code == 0, result.output
    assert rows(before_db)[3] == "0003"
    assert run("db", "upgrade", "--database-url", before_db, "--revision",
               "0002").exit_code == 2  # contracted: no way back up, only downgrade
