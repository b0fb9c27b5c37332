"""Alembic environment: the database is ``sqlalchemy.url`` when the runner sets it, else the
app's own DATABASE_URL (the environment, then ``.env``)."""

import os

from alembic import context
from dotenv import dotenv_values
from sqlalchemy import create_engine

config = context.config
url = (config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL")
       or dotenv_values(".env").get("DATABASE_URL"))
if not url:
    raise SystemExit("no database: set DATABASE_URL (environment or .env)")

engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
