"""Expand: object keys beside the local paths (users.avatar_key, files.key), kept in step.

Safe while before-instances still run: nothing they read or write goes away. The new columns
are filled from the old ones with ``migrate.keys.object_key`` (the function ``export-files``
names objects with), and triggers copy every later write of an old column into its new one,
so after-instances find what a before-instance just stored. ``files.path`` becomes nullable
because the after-app inserts rows with only a key. Pass the export's prefix with
``-x prefix=...`` (default: the bucket's root). Revision 0003 contracts (drops the old columns).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from migrate.keys import object_key, relative_path
from sample_stateless_app.migrations.keysync import (
    MOVES,
    backfill,
    create_triggers,
    drop_triggers,
    prefix_arg,
    rewrite,
)

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One transaction: once the rewrite starts, the tables stay locked against other writers
    # until the triggers exist, so no before-app write slips between backfill and trigger.
    prefix = prefix_arg()
    op.add_column("users", sa.Column("avatar_key", sa.String(512), nullable=True))
    # SQLite cannot drop NOT NULL in place: batch copies the table (before any trigger exists,
    # since copying a table drops the triggers on it).
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("key", sa.String(512), nullable=True))
        batch.alter_column("path", existing_type=sa.String(512), nullable=True)
    backfill(prefix)
    create_triggers(prefix)


def _stale(path: str, key: str, prefix: str) -> bool:
    """True when ``path`` does not give ``key``: the after-app wrote the key since."""
    try:
        return object_key(path, prefix) != key
    except ValueError:
        return True


def downgrade() -> None:
    prefix = prefix_arg()
    drop_triggers()
    # The key is the latest truth (the triggers copied every before-app write into it): bring
    # back into the old column what after-instances wrote, and the rows they inserted.
    for move in MOVES:
        rewrite(move, move.new, move.old, lambda key: relative_path(key, prefix),
                only=lambda key, path: path is None or _stale(path, key, prefix))
    with op.batch_alter_table("files") as batch:
        batch.drop_column("key")
        batch.alter_column("path", existing_type=sa.String(512), nullable=False)
    with op.batch_alter_table("users") as batch:
        batch.drop_column("avatar_key")
