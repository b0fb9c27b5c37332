"""Database URLs that are not SQLite on this host: a server from the environment, a scheme
test, a scratch in-memory connection, a test-only configuration."""

import os
import sqlite3

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ.get(
    "DATABASE_URL", "postgresql+psycopg://shop@db/shop")
db = SQLAlchemy(app)


def is_sqlite(url):
    return url.startswith("sqlite://") or url.startswith("sqlite+pysqlite://")


def normalise(csv_text):
    scratch = sqlite3.connect(":memory:")
    scratch.execute("create table t (line text)")
    scratch.executemany("insert into t values (?)", [(x,) for x in csv_text.splitlines()])
    return scratch.execute("select count(*) from t").fetchone()[0]


def create_test_app():
    test_app = Flask(__name__)
    test_app.config.update(TESTING=True, SQLALCHEMY_DATABASE_URI="sqlite://")
    return test_app


@app.get("/health")
def health():
    if is_sqlite(app.config["SQLALCHEMY_DATABASE_URI"]):
        return "sqlite"
    return str(normalise("a\nb"))
