"""The test run says which database the database tests ran on (never a password).

Without DATABASE_URL the tests fall back to SQLite and the PostgreSQL cases are skipped: the
header and the summary say so, so a green run cannot hide that PostgreSQL was never tried.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TESTS = '''
import pytest


def test_with_a_database(database_url):
    assert database_url


def test_only_on_postgresql():
    pytest.skip("DATABASE_URL does not point at PostgreSQL (CI sets it)")


@pytest.mark.parametrize("kind", ["sqlite"])
def test_on_a_database_of_its_own(kind):
    assert kind == "sqlite"


def test_without_a_database():
    pass
'''


def run_pytest(tmp_path: Path, database_url: str | None, *args: str) -> str:
    """pytest on a small test file, with this suite's conftest as a plugin; its output."""
    (tmp_path / "test_small.py").write_text(TESTS)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path / "test_small.py"), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_without_database_url_the_run_says_sqlite_and_counts_the_skipped(tmp_path) -> None:
    out = run_pytest(tmp_path, None, "-v")
    header = [line for line in out.splitlines() if line.startswith("database:")]
    assert len(header) == 1 and "SQLite" in header[0] and "DATABASE_URL is not set" in header[0]
    assert ("database tests: 2 on SQLite, 0 on PostgreSQL, 1 skipped for want of PostgreSQL"
            in out)
    # -v: each database test with its database
    assert "SQLite: test_small.py::test_with_a_database\n" in out
    assert "SQLite: test_small.py::test_on_a_database_of_its_own[sqlite]" in out
    assert "SQLite: test_small.py::test_without_a_database" not in out


def test_with_a_postgresql_url_the_header_names_it_without_the_password(tmp_path) -> None:
    url = "postgresql+psycopg://app:sekret-pw@127.0.0.1:1/shop"  # collected only: no server
    out = run_pytest(tmp_path, url, "--collect-only")
    header = [line for line in out.splitlines() if line.startswith("database:")]
    assert header == ["database: PostgreSQL at postgresql+psycopg://app:***@127.0.0.1:1/shop "
                      "(DATABASE_URL), a fresh database per test"]
    assert "sekret-pw" not in out


def test_a_database_url_that_is_not_postgresql_is_named_as_such(tmp_path) -> None:
    out = run_pytest(tmp_path, "mysql://app:sekret-pw@db/shop", "--collect-only")
    assert "database: SQLite" in out and "mysql://app:***@db/shop is not PostgreSQL" in out
    assert "sekret-pw" not in out
