"""Alembic history of the shop's schema, runnable from Python (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect

HERE = Path(__file__).parent
BASELINE = "0001"  # the schema the before-app created for itself


def alembic_config(url: str, **x_args: str) -> Config:
    """A Config pointing at this folder; ``x_args`` are what ``alembic -x key=value`` passes."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["url"] = url
    config.cmd_opts = type("Opts", (), {"x": [f"{k}={v}" for k, v in x_args.items()]})()
    return config


def current_revision(url: str) -> str | None:
    """The revision the database is at (None: no alembic table)."""
    from alembic.runtime.migration import MigrationContext

    from ..db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def upgrade_database(url: str, revision: str = "head", **x_args: str) -> None:
    """Upgrade to ``revision``; a database made by the before-app is stamped at 0001 first."""
    from ..db import make_engine

    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    config = alembic_config(url, **x_args)
    if "users" in tables and "alembic_version" not in tables:
        command.stamp(config, BASELINE)
    command.upgrade(config, revision)


def downgrade_database(url: str, revision: str, **x_args: str) -> None:
    command.downgrade(alembic_config(url, **x_args), revision)
