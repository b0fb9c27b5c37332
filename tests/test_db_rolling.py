"""A rolling cut-over on one database: the expand (0002) keeps the before-app working while its
writes reach the after-app's columns, the contract (0003) leaves exactly the after schema, and
the downgrades bring every value back. SQLite always, PostgreSQL when DATABASE_URL says so."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, inspect, select, text
from sqlalchemy.orm import Session

from migrate.keys import object_key
from migrate.runbook.db import DbConfig, downgrade, upgrade
from sample_stateless_app.db import BASELINE, MIGRATIONS

AVATAR = "avatars/1/me.png"
FILE_ID = "0123456789abcdef0123456789abcdef"
FILE_PATH = f"files/{FILE_ID}/report 2024.pdf"
# A prefix that breaks naive SQL quoting: a quote, %, :name, a dollar-quote tag, a backslash.
NASTY = "shop/o'brien 100%:x $body$ \\"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


@pytest.fixture
def before_db(database_url: str) -> str:
    """The before-app's own database: its tables, no alembic, a stored avatar and file."""
    from sample_stateful_app.db import init_db

    init_db(database_url)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE users SET avatar_path = :p WHERE username = 'alice'"),
                     {"p": AVATAR})
        conn.execute(text("INSERT INTO files (id, user_id, filename, size, path) "
                          "VALUES (:i, 1, 'report 2024.pdf', 10, :p)"),
                     {"i": FILE_ID, "p": FILE_PATH})
    engine.dispose()
    return database_url


def shop(url: str) -> DbConfig:
    """The shop's own alembic environment, named explicitly (as the harness does)."""
    return DbConfig(url, script_location=str(MIGRATIONS), baseline=BASELINE)


def before_client(url: str, tmp_path: Path):
    """A before-app instance on ``url`` (its code untouched), logged in as alice."""
    from sample_stateful_app import create_app

    from .conftest import AuthActions

    app = create_app({"TESTING": True, "DATABASE_URL": url, "UPLOAD_FOLDER": str(tmp_path / "up")})
    client = app.test_client()
    assert AuthActions(client).login().status_code == 302
    return client


def query(url: str, sql: str, **params: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params).all()]
    finally:
        engine.dispose()


def users(url: str, column: str) -> dict[str, str | None]:
    return dict(query(url, f"SELECT username, {column} FROM users"))  # type: ignore[arg-type]


def files(url: str, column: str) -> dict[str, str | None]:
    return dict(query(url, f'SELECT id, "{column}" FROM files'))  # type: ignore[arg-type]


def schema_diff(url: str, metadata: MetaData) -> list:
    """What alembic autogenerate would change to make ``url`` match ``metadata`` ([]: same)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def triggers(url: str) -> list[str]:
    """Every trigger (and, on PostgreSQL, trigger function) the migrations left behind."""
    if url.startswith("sqlite"):
        return [r[0] for r in query(url, "SELECT name FROM sqlite_master WHERE type = 'trigger'")]
    return [r[0] for r in query(url, "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")] + [
        r[0] for r in query(url, "SELECT proname FROM pg_proc WHERE proname LIKE 'migrate%'")]


def upload_avatar(client, name: str, data: bytes = PNG):
    return client.post("/account/avatar", data={"avatar": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def chunked_upload(client, filename: str, parts: list[bytes]) -> str:
    upload_id = client.post("/uploads", json={"filename": filename}).json["upload_id"]
    for n, part in enumerate(parts, 1):
        assert client.put(f"/uploads/{upload_id}/chunks/{n}", data=part).status_code == 200
    done = client.post(f"/uploads/{upload_id}/complete", json={"chunks": len(parts)})
    assert done.status_code == 200, done.data
    return upload_id


@pytest.mark.parametrize("prefix", ["", NASTY], ids=["no-prefix", "nasty-prefix"])
def test_before_app_keeps_working_on_the_expand_and_its_writes_get_keys(
        before_db: str, tmp_path: Path, prefix: str) -> None:
    result = upgrade(shop(before_db), revision="0002", prefix=prefix)
    assert (result.before, result.after, result.stamped) == (None, "0002", True)
    assert users(before_db, "avatar_key")["alice"] == object_key(AVATAR, prefix)
    assert files(before_db, "key")[FILE_ID] == object_key(FILE_PATH, prefix)

    client = before_client(before_db, tmp_path)
    assert upload_avatar(client, "new.png").status_code == 302
    assert client.get("/account/avatar").data == PNG  # the before-app itself: unchanged
    row = query(before_db, "SELECT avatar_path, avatar_key FROM users WHERE username = 'alice'")
    assert row == [("avatars/1/new.png", object_key("avatars/1/new.png", prefix))]

    upload_id = chunked_upload(client, "holiday.mp4", [b"a" * 1000, b"b" * 10])
    assert client.get(f"/files/{upload_id}").data == b"a" * 1000 + b"b" * 10
    path = f"files/{upload_id}/holiday.mp4"
    assert query(before_db, 'SELECT path, "key" FROM files WHERE id = :i', i=upload_id) == [
        (path, object_key(path, prefix))]
    # Every key equals what export-files named the object it uploads for that path.
    assert all(key == object_key(path, prefix) for path, key in
               query(before_db, 'SELECT path, "key" FROM files'))


def test_after_app_models_read_and_write_on_the_expand(before_db: str, tmp_path: Path) -> None:
    from sample_stateless_app.db import File, User, make_engine

    upgrade(shop(before_db), revision="0002", prefix="shop")
    engine = make_engine(before_db)
    new_id = uuid.uuid4().hex
    with Session(engine) as s, s.begin():
        alice = s.scalar(select(User).where(User.username == "alice"))
        assert alice is not None and alice.avatar_key == "shop/avatars/1/me.png"
        assert s.get(File, FILE_ID).key == f"shop/{FILE_PATH}"
        alice.avatar_key = "shop/avatars/1/after.png"
        s.add(File(id=new_id, user_id=alice.id, filename="a.txt", size=3,
                   key=f"shop/files/{new_id}/a.txt"))  # no path: the after-app has none
    with Session(engine) as s:
        assert s.scalar(select(User.avatar_key).where(User.username == "alice")) == (
            "shop/avatars/1/after.png")  # no trigger overwrote the after-app's write
        assert s.get(File, new_id).key == f"shop/files/{new_id}/a.txt"
    engine.dispose()
    # The before-app still serves its own rows beside the after-app's.
    client = before_client(before_db, tmp_path)
    assert client.get("/account").status_code == 200
    upload_id = chunked_upload(client, "b.txt", [b"xyz"])
    assert files(before_db, "key")[upload_id] == f"shop/files/{upload_id}/b.txt"


def test_contract_leaves_exactly_the_after_schema_with_every_key(before_db: str,
                                                                  tmp_path: Path) -> None:
    from sample_stateless_app.db import Base

    upgrade(shop(before_db), revision="0002", prefix="shop")
    client = before_client(before_db, tmp_path)
    upload_id = chunked_upload(client, "late.bin", [b"late"])
    upload_avatar(client, "late.png")
    # A key lost since the expand (written by hand, say) is filled by the contract.
    query_engine = create_engine(before_db)
    with query_engine.begin() as conn:
        conn.execute(text('UPDATE files SET "key" = NULL WHERE id = :i'), {"i": FILE_ID})
    query_engine.dispose()

    result = upgrade(shop(before_db), prefix="shop")
    assert (result.before, result.after, result.target) == ("0002", "0003", "0003")
    assert schema_diff(before_db, Base.metadata) == []  # alembic autogenerate finds nothing
    assert triggers(before_db) == []
    assert files(before_db, "key") == {FILE_ID: f"shop/{FILE_PATH}",
                                       upload_id: f"shop/files/{upload_id}/late.bin"}
    assert users(before_db, "avatar_key") == {"alice": "shop/avatars/1/late.png", "bob": None}
    columns = {c["name"]: c["nullable"] for c in inspect(create_engine(before_db)).get_columns(
        "files")}
    assert columns["key"] is False and "path" not in columns


@pytest.mark.parametrize("prefix", ["shop", NASTY], ids=["prefix", "nasty-prefix"])
def test_downgrades_round_trip_every_value(before_db: str, tmp_path: Path, prefix: str) -> None:
    from sample_stateful_app.db import Base as BeforeBase

    upgrade(shop(before_db), revision="0002", prefix=prefix)
    upload_id = chunked_upload(before_client(before_db, tmp_path), "x.bin", [b"x"])
    # A row the after-app inserted (key only) must come back with a path too.
    after_id = uuid.uuid4().hex
    engine = create_engine(before_db)
    with engine.begin() as conn:
        conn.execute(text('INSERT INTO files (id, user_id, filename, size, "key") VALUES '
                          "(:i, 2, 'y.bin', 1, :k)"),
                     {"i": after_id, "k": object_key(f"files/{after_id}/y.bin", prefix)})
    engine.dispose()
    upgrade(shop(before_db), prefix=prefix)
    keys = files(before_db, "key")

    result = downgrade(shop(before_db), revision="0002", prefix=prefix)
    assert (result.before, result.after) == ("0003", "0002")
    paths = {FILE_ID: FILE_PATH, upload_id: f"files/{upload_id}/x.bin",
             after_id: f"files/{after_id}/y.bin"}
    assert files(before_db, "path") == paths and files(before_db, "key") == keys
    assert users(before_db, "avatar_path") == {"alice": AVATAR, "bob": None}
    # The triggers are back: a before-instance rolled back in is followed again.
    client = before_client(before_db, tmp_path / "again")
    assert upload_avatar(client, "back.png").status_code == 302
    assert users(before_db, "avatar_key")["alice"] == object_key("avatars/1/back.png", prefix)

    result = downgrade(shop(before_db), revision="0001", prefix=prefix)
    assert (result.before, result.after) == ("0002", "0001")
    assert schema_diff(before_db, BeforeBase.metadata) == []  # the before-app's own schema
    assert triggers(before_db) == []
    assert files(before_db, "path") == paths
    assert users(before_db, "avatar_path") == {"alice": "avatars/1/back.png", "bob": None}
    # Same upload folder: the before-app, back on its own schema, serves the file it stored.
    assert before_client(before_db, tmp_path / "again").get("/account/avatar").data == PNG
