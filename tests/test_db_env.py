"""`migrate db` on an app it was not written for: a throwaway alembic environment in tmp_path
(documents.file_path -> file_key, written with migrate.runbook.ops), found through
[tool.migrate], --script-location or --alembic-ini. SQLite always, PostgreSQL when
DATABASE_URL points at one (a fresh database per test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
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

PATHS = {1: "docs/1/report.pdf", 2: unicodedata.normalize("NFD", "docs/2/Résumé.pdf")}

ENV_PY = '''\
"""A standard alembic env.py: the URL from sqlalchemy.url; what it was given, recorded."""
import json
from pathlib import Path

from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
Path(__file__).with_name("given.json").write_text(json.dumps({
    "url": config.get_main_option("sqlalchemy.url"), "attribute": config.attributes.get("url"),
    "x": context.get_x_argument(as_dictionary=True)}))
engine = engine_from_config(config.get_section(config.config_ini_section, {}),
                            prefix="sqlalchemy.", poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
'''
REVISIONS = {
    "0001_documents.py": '''\
"""The documents table, as the before-app's create_all makes it."""
import sqlalchemy as sa
from alembic import op

revision, down_revision, branch_labels, depends_on = "0001", None, None, None


def upgrade():
    op.create_table("documents", sa.Column("doc_id", sa.Integer, primary_key=True),
                    sa.Column("title", sa.String(100), nullable=False),
                    sa.Column("file_path", sa.String(512), nullable=False))


def downgrade():
    op.drop_table("documents")
''',
    "0002_expand.py": '''\
"""Expand: documents.file_key beside file_path."""
from migrate.runbook.ops import expand_path_to_key, undo_expand_path_to_key

revision, down_revision, branch_labels, depends_on = "0002", "0001", None, None


def upgrade():
    expand_path_to_key("documents", "file_path", "file_key", nullable_path=True, pk="doc_id")


def downgrade():
    undo_expand_path_to_key("documents", "file_path", "file_key", nullable_path=True,
                            pk="doc_id")
''',
    "0003_contract.py": '''\
"""Contract: documents.file_path goes."""
from migrate.runbook import ops

revision, down_revision, branch_labels, depends_on = "0003", "0002", None, None


def upgrade():
    ops.contract_path_to_key("documents", "file_path", "file_key", nullable_key=False,
                             pk="doc_id")


def downgrade():
    ops.undo_contract_path_to_key("documents", "file_path", "file_key", nullable_key=False,
                                  pk="doc_id")
''',
}


def write_app(root: Path, *, pyproject: bool = True, ini: bool = False,
              imports_app: bool = False) -> Path:
    """An app folder with its alembic history under migrations/; returns the folder.

    ``imports_app``: env.py imports the app's own module (docsapp.py), as most env.py files
    import their models.
    """
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True)
    env_py = ENV_PY
    if imports_app:
        (root / "docsapp.py").write_text('TABLES = ["documents"]\n')
        env_py = env_py.replace("import json\n", "import json\n\nimport docsapp  # noqa\n")
    (root / "migrations" / "env.py").write_text(env_py)
    for name, body in REVISIONS.items():
        (versions / name).write_text(body)
    if pyproject:
        (root / "pyproject.toml").write_text(textwrap.dedent("""\
            [project]
            name = "documents"

            [tool.migrate]
            script_location = "migrations"
            baseline = "0001"
            """))
    if ini:
        (root / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    return root


def given(app: Path) -> dict:
    """What the app's env.py received last time it ran."""
    return json.loads((app / "migrations" / "given.json").read_text())


@pytest.fixture(params=["sqlite", "postgresql"])
def before_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The before-app's database: create_all's table (no alembic_version), two stored paths."""
    admin = None
    if request.param == "sqlite":
        folder = tmp_path / "data 100%"  # a '%' reaches env.py's sqlalchemy.url intact
        folder.mkdir()
        url = f"sqlite:///{folder / 'docs.db'}"
    else:
        base = os.environ.get("DATABASE_URL", "")
        if not base.startswith("postgresql"):
            pytest.skip("DATABASE_URL does not point at PostgreSQL (CI sets it)")
        name = f"migrate_dbenv_{uuid.uuid4().hex[:12]}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(base).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE documents (doc_id INTEGER PRIMARY KEY, title "
                          "VARCHAR(100) NOT NULL, file_path VARCHAR(512) NOT NULL)"))
        for doc_id, path in PATHS.items():
            conn.execute(text("INSERT INTO documents VALUES (:i, 'doc', :p)"),
                         {"i": doc_id, "p": path})
    engine.dispose()
    yield url
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def run(cwd: Path, *args: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(cli, ["db", *args], catch_exceptions=False)


def documents(url: str) -> tuple[dict[str, bool], dict[int, tuple]]:
    """(column -> nullable, doc_id -> (file_path, file_key) with None where a column is gone)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            columns = {c["name"]: c["nullable"] for c in inspect(conn).get_columns("documents")}
            picked = [c if c in columns else "NULL" for c in ("file_path", "file_key")]
            rows = conn.execute(text(f"SELECT doc_id, {', '.join(picked)} FROM documents"))
            return columns, {r[0]: (r[1], r[2]) for r in rows}
    finally:
        engine.dispose()


def sql(url: str, statement: str, **params: object) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(statement), params)
    engine.dispose()


def test_expand_then_contract_through_tool_migrate_keeps_a_before_app_in_step(
        before_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = write_app(tmp_path / "app")
    expand = run(app, "upgrade", "--revision", "0002", "--prefix", "docs", "--database-url",
                 before_db, "--json", monkeypatch=monkeypatch)
    assert expand.exit_code == 0, expand.output
    data = json.loads(expand.output)
    assert (data["before"], data["after"], data["stamped"], data["baseline"]) == (
        None, "0002", True, "0001")
    assert data["state"].startswith("expanded") and data["rows"] == {"file": 2}
    # The URL reached env.py as alembic's templates read it, the prefix as -x prefix.
    assert given(app) == {"url": before_db, "attribute": before_db, "x": {"prefix": "docs"}}
    columns, rows = documents(before_db)
    assert rows == {i: (p, object_key(p, "docs")) for i, p in PATHS.items()}
    assert columns["file_path"] and columns["file_key"]  # the after-app inserts keys only

    # A before-app still writing paths: the triggers keep the keys in step.
    sql(before_db, "INSERT INTO documents (doc_id, title, file_path) "
                   "VALUES (3, 'n', 'docs/3/n.txt')")
    sql(before_db, "UPDATE documents SET file_path = 'docs/1/v2.pdf' WHERE doc_id = 1")
    sql(before_db, "INSERT INTO documents (doc_id, title, file_key) VALUES (4, 'a', 'docs/x/a')")
    rows = documents(before_db)[1]
    assert rows[1] == ("docs/1/v2.pdf", "docs/docs/1/v2.pdf")
    assert rows[3] == ("docs/3/n.txt", "docs/docs/3/n.txt") and rows[4] == (None, "docs/x/a")

    status = run(app, "status", "--database-url", before_db, "--json", monkeypatch=monkeypatch)
    assert status.exit_code == 0, status.output
    data = json.loads(status.output)
    assert (data["current"], data["head"], data["pending"], data["unversioned"]) == (
        "0002", "0003", ["0003"], False)

    contract = run(app, "upgrade", "--prefix", "docs", "--database-url", before_db,
                   monkeypatch=monkeypatch)
    assert contract.exit_code == 0, contract.output
    assert "0002 → 0003" in contract.output and "contracted" in contract.output
    columns, rows = documents(before_db)
    assert "file_path" not in columns and columns["file_key"] is False
    assert rows[1][1] == "docs/docs/1/v2.pdf" and rows[2][1] == object_key(PATHS[2], "docs")


def test_script_location_baseline_and_downgrade_from_anywhere(
        before_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = write_app(tmp_path / "app", pyproject=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = ["--script-location", str(app / "migrations"), "--database-url", before_db]

    # Tables but no alembic_version, and no baseline: one line that names the fix.
    refused = run(elsewhere, "upgrade", *where, monkeypatch=monkeypatch)
    assert refused.exit_code == 2 and "no alembic_version" in refused.output
    assert "--baseline REV" in refused.output and "Traceback" not in refused.output
    status = run(elsewhere, "status", *where, "--json", monkeypatch=monkeypatch)
    data = json.loads(status.output)
    assert data["unversioned"] is True and data["current"] is None and data["tables"] == 1

    dry = run(elsewhere, "upgrade", *where, "--baseline", "0001", "--dry-run", "--json",
              monkeypatch=monkeypatch)
    data = json.loads(dry.output)
    assert (data["stamped"], data["revisions"], data["target"]) == (True, ["0002", "0003"],
                                                                    "0003")
    assert documents(before_db)[1][1] == (PATHS[1], None)  # nothing changed

    done = run(elsewhere, "upgrade", *where, "--baseline", "0001", "-x", "prefix=docs",
               monkeypatch=monkeypatch)
    assert done.exit_code == 0, done.output
    assert "stamped 0001 first" in done.output and "2 file rows" in done.output
    assert documents(before_db)[1] == {i: (None, object_key(p, "docs"))
                                       for i, p in PATHS.items()}

    # Another prefix than the expand's cannot take the keys back to paths.
    wrong = run(elsewhere, "downgrade", "--revision", "0001", *where, "--prefix", "other",
                monkeypatch=monkeypatch)
    assert wrong.exit_code == 2 and "pass the --prefix used for upgrade" in wrong.output
    down = run(elsewhere, "downgrade", "--revision", "0001", *where, "--prefix", "docs",
               "--json", monkeypatch=monkeypatch)
    assert down.exit_code == 0, down.output
    data = json.loads(down.output)
    assert (data["before"], data["after"], data["revisions"]) == ("0003", "0001",
                                                                  ["0003", "0002"])
    columns, rows = documents(before_db)
    assert "file_key" not in columns and columns["file_path"] is False
    assert rows == {i: (unicodedata.normalize("NFC", p), None) for i, p in PATHS.items()}


def test_alembic_ini_and_the_one_line_errors(before_db: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    app = write_app(tmp_path / "app", pyproject=False, ini=True)
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()

    # No option and no [tool.migrate]: the fix, in one line.
    missing = run(nowhere, "upgrade", "--database-url", before_db, monkeypatch=monkeypatch)
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert "no alembic environment" in missing.output and "--script-location" in missing.output
    assert "tool.migrate table of pyproject.toml" in missing.output

    # An ini's relative script_location is found beside it, from any folder.
    ini = ["--alembic-ini", str(app / "alembic.ini"), "--baseline", "0001"]
    status = run(nowhere, "status", *ini, "--database-url", before_db, monkeypatch=monkeypatch)
    assert status.exit_code == 0, status.output
    assert "pending: 0002, 0003" in status.output and "stamps it at the baseline 0001" in (
        status.output)
    conflict = run(nowhere, "upgrade", *ini, "--database-url", before_db, "--prefix", "a",
                   "-x", "prefix=b", monkeypatch=monkeypatch)
    assert conflict.exit_code == 2 and "disagree" in conflict.output
    unknown = run(nowhere, "upgrade", *ini, "--database-url", before_db, "--revision", "0009",
                  monkeypatch=monkeypatch)
    assert unknown.exit_code == 2 and "unknown revision '0009'" in unknown.output

    for url, says in [("nonsense", "is not a usable database URL"),
                      ("postgresql+psycopg://app:sekret-pw@127.0.0.1:1/app",
                       "cannot open the database")]:
        bad = run(nowhere, "upgrade", *ini, "--database-url", url, monkeypatch=monkeypatch)
        assert bad.exit_code == 2 and says in bad.output, bad.output
        assert "sekret-pw" not in bad.output and "Traceback" not in bad.output
        assert len(bad.output.strip().splitlines()) == 1
    assert documents(before_db)[1][1] == (PATHS[1], None)  # nothing ran


def test_a_path_outside_the_folder_stops_the_expand_before_any_change(
        before_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = write_app(tmp_path / "app")
    sql(before_db, "UPDATE documents SET file_path = '../etc/passwd' WHERE doc_id = 2")
    refused = run(app, "upgrade", "--revision", "0002", "--database-url", before_db,
                  monkeypatch=monkeypatch)
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert "documents row doc_id=2" in refused.output and "../etc/passwd" in refused.output
    assert "file_key" not in documents(before_db)[0]  # no half-made expand left behind

    sql(before_db, "UPDATE documents SET file_path = 'docs/2/fixed.pdf' WHERE doc_id = 2")
    again = run(app, "upgrade", "--revision", "0002", "--database-url", before_db,
                monkeypatch=monkeypatch)
    assert again.exit_code == 0, again.output
    assert documents(before_db)[1][2] == ("docs/2/fixed.pdf", "docs/2/fixed.pdf")


def test_env_py_imports_the_app_from_the_project_folder(before_db: str, tmp_path: Path) -> None:
    """As alembic.ini's prepend_sys_path does: the console script's own sys.path lacks it."""
    app = write_app(tmp_path / "app", imports_app=True)
    migrate = Path(sys.executable).with_name("migrate")
    done = subprocess.run([str(migrate), "db", "upgrade", "--revision", "0002", "--database-url",
                           before_db, "--json"], cwd=app, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["after"] == "0002"
    assert "docsapp" not in done.stderr
