"""Alembic environment of the shop. The URL comes from the caller, as alembic's templates read
it (``sqlalchemy.url``, or ``config.attributes["url"]`` from Python), else DATABASE_URL."""

import os

from alembic import context

from sample_stateless_app.db import Base, make_engine

config = context.config
url = (config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
       or os.environ["DATABASE_URL"])

engine = make_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
