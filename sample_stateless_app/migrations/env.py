"""Alembic environment: the URL comes from the caller (or DATABASE_URL), never from a file."""

import os

from alembic import context

from sample_stateless_app.db import Base, make_engine

config = context.config
url = config.attributes.get("url") or os.environ["DATABASE_URL"]

engine = make_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
