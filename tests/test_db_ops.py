"""migrate.runbook.ops without a migration: trigger names and SQL, the prefix a trigger holds,
the plan `migrate db` reads from revision files; and the MySQL/MariaDB triggers on a real
MariaDB server started here (through its own client: no Python driver is needed)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from migrate.runbook.dbplan import find_moves
from migrate.runbook.ops import (
    KeyMove,
    drop_ddl,
    key_prefix,
    parse_prefix,
    sql_literal,
    trigger_ddl,
)
from sample_stateless_app.db import MIGRATIONS

# A prefix that breaks naive SQL quoting: a quote, %, :name, a dollar-quote tag, a backslash.
NASTY = "shop/o'brien 100%:x $body$ \\ é"
MOVE = KeyMove("documents", "file_path", "file_key", pk="doc_id")


def test_trigger_names_are_readable_and_fit_postgresql() -> None:
    assert MOVE.trigger == "migrate_documents_file_path_to_file_key"
    long = KeyMove("Customer Attachments", "original_upload_path", "object_storage_key")
    assert len(long.trigger) <= 48 and long.trigger.startswith("migrate_customer_attach")
    assert long.trigger == long.trigger.lower() and long.trigger.isidentifier()


@pytest.mark.parametrize("dialect", ["sqlite", "mysql"])
def test_the_prefix_a_trigger_holds_reads_back_exactly(dialect: str) -> None:
    create = trigger_ddl(dialect, MOVE, NASTY)
    assert parse_prefix(dialect, create[1]) == key_prefix(NASTY) == NASTY + "/"
    assert len(drop_ddl(dialect, MOVE, str)) == 2


def test_mysql_literals_do_not_depend_on_sql_mode() -> None:
    literal = sql_literal("mysql", "a'b\\c")
    assert literal == "_utf8mb4 X'6127625C63'"  # a ' b \ c, as bytes
    with pytest.raises(NotImplementedError, match="no sync triggers for the oracle dialect"):
        trigger_ddl("oracle", MOVE, "")


def test_the_plan_names_each_move_with_its_expand_and_contract() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    moves = find_moves(ScriptDirectory.from_config(config))
    assert [(m.table, m.path_column, m.key_column, m.expand, m.contract) for m in moves.moves] == [
        ("users", "avatar_path", "avatar_key", "0002", "0003"),
        ("files", "path", "key", "0002", "0003")]
    assert [label for label, _ in moves.labels()] == ["avatar", "file"]
    assert moves.describe({"0001", None}) == ""
    assert moves.describe({"0001", "0002"}).startswith("expanded: ")
    assert moves.describe({"0001", "0002", "0003"}).startswith("contracted: ")


# --- MySQL / MariaDB -----------------------------------------------------------------------------

SERVER = shutil.which("mariadbd") or shutil.which("mysqld")
CLIENT = shutil.which("mariadb") or shutil.which("mysql")
INSTALL = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")


class MariaDB:
    """A throwaway server on a Unix socket in its own folder, stopped by its pid."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.socket = folder, folder / "sock"
        root = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run([INSTALL, "--no-defaults", f"--datadir={folder / 'data'}", *root,
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, timeout=120)
        self.process = subprocess.Popen(
            [SERVER, "--no-defaults", f"--datadir={folder / 'data'}", *root,
             f"--socket={self.socket}", "--skip-networking", "--skip-log-bin",
             f"--pid-file={folder / 'pid'}", f"--log-error={folder / 'error.log'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while self.query("SELECT 1", check=False).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.skip("the MariaDB server did not start: "
                            + (folder / "error.log").read_text()[-300:])
            time.sleep(0.2)

    def query(self, sql: str, *, check: bool = True,
              database: str = "") -> subprocess.CompletedProcess:
        done = subprocess.run([CLIENT, "--no-defaults", f"--socket={self.socket}", "-uroot",
                               "--batch", "--raw", "--skip-column-names",
                               *([database] if database else [])],
                              input=sql, text=True, capture_output=True, timeout=30)
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    if not (SERVER and CLIENT and INSTALL):
        pytest.skip("no MariaDB/MySQL server here (apt-get install mariadb-server)")
    folder = tmp_path_factory.mktemp("mariadb")
    server = MariaDB(folder)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def backticks(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def test_mysql_triggers_keep_keys_in_step_whatever_the_sql_mode(mariadb: MariaDB) -> None:
    mariadb.query("CREATE DATABASE docs")
    statements = trigger_ddl("mysql", MOVE, NASTY, backticks)
    mariadb.query("CREATE TABLE documents (doc_id INT PRIMARY KEY, file_path VARCHAR(512), "
                  "file_key VARCHAR(512)) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;\n"
                  + "".join(s + ";\n" for s in statements), database="docs")
    prefix = key_prefix(NASTY)

    def keys() -> dict[str, tuple[str, str]]:
        out = mariadb.query("SELECT doc_id, file_path, file_key FROM documents ORDER BY doc_id",
                            database="docs").stdout
        return {row.split("\t")[0]: tuple(row.split("\t")[1:]) for row in out.splitlines()}

    mariadb.query("SET sql_mode = 'NO_BACKSLASH_ESCAPES,ANSI_QUOTES';\n"
                  "INSERT INTO documents (doc_id, file_path) VALUES (1, 'docs/1/Résumé.pdf');\n"
                  "INSERT INTO documents VALUES (2, NULL, 'after/only.txt');\n"
                  "INSERT INTO documents (doc_id, file_path) VALUES (3, 'docs/3/a.txt');\n"
                  "UPDATE documents SET file_path = 'docs/3/b.txt' WHERE doc_id = 3;\n"
                  "UPDATE documents SET file_key = 'after/new.txt' WHERE doc_id = 1;\n",
                  database="docs")
    assert keys() == {"1": ("docs/1/Résumé.pdf", "after/new.txt"),  # the after-app's write
                      "2": ("NULL", "after/only.txt"),
                      "3": ("docs/3/b.txt", prefix + "docs/3/b.txt")}
    stored = mariadb.query("SELECT ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE "
                           f"TRIGGER_NAME = '{MOVE.trigger}_update'", database="docs").stdout
    assert parse_prefix("mysql", stored) == prefix
    mariadb.query("".join(s + ";\n" for s in drop_ddl("mysql", MOVE, backticks)),
                  database="docs")
    assert mariadb.query("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE "
                         "TRIGGER_SCHEMA = 'docs'").stdout.strip() == "0"
