"""The database, with SQLAlchemy Core.

Where a photo's bytes are is one column, named ``location`` in the code: ``photos.path`` (a file
under UPLOAD_FOLDER) while photos are local, ``photos.key`` (an object in PHOTO_BUCKET) once
migrations/0002 has added it. The before-app creates its tables itself (``create_all``);
alembic takes over from there (``migrate db upgrade`` stamps revision 0001 first).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app, g
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, create_engine
from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class Schema:
    metadata: MetaData
    users: Table
    photos: Table


def schema(location_column: str) -> Schema:
    metadata = MetaData()
    users = Table(
        "users", metadata,
        Column("id", Integer, primary_key=True),
        Column("username", String(80), unique=True, nullable=False),
        Column("password_hash", String(256), nullable=False),
    )
    photos = Table(
        "photos", metadata,
        Column("id", Integer, primary_key=True),
        Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
        Column("caption", String(200), nullable=False),
        Column("filename", String(255), nullable=False),
        Column(location_column, String(512), nullable=False, key="location"),
    )
    return Schema(metadata, users, photos)


def init_app(app: Flask) -> None:
    in_bucket = bool(app.config["PHOTO_BUCKET"])
    tables = schema("key" if in_bucket else "path")
    engine = create_engine(app.config["DATABASE_URL"])
    if not in_bucket:
        tables.metadata.create_all(engine)  # the before-app's way; alembic's from 0001 on
    app.extensions["gallery.db"] = (engine, tables)

    @app.teardown_appcontext
    def close(_error: BaseException | None) -> None:
        conn = g.pop("conn", None)
        if conn is not None:
            conn.close()


def tables() -> Schema:
    return current_app.extensions["gallery.db"][1]


def conn() -> Connection:
    """This request's connection; commit what you change (``conn().commit()``)."""
    if "conn" not in g:
        g.conn = current_app.extensions["gallery.db"][0].connect()
    return g.conn
