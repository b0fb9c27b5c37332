"""Contract: drop the local-path columns (users.avatar_path, files.path) and their triggers.

Run once no before-instance is left (they read and write those columns). Any row whose key is
still NULL is filled first, with the prefix the expand used (a different ``-x prefix`` is
refused). ``files.key`` becomes NOT NULL: every file row has one now. Downgrade brings the old
columns back, filled with ``migrate.keys.relative_path(key, prefix)``, and the triggers with them.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from migrate.keys import relative_path
from sample_stateless_app.migrations.keysync import (
    MOVES,
    backfill,
    check_prefix,
    create_triggers,
    drop_triggers,
    prefix_arg,
    rewrite,
)

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    prefix = prefix_arg()
    check_prefix(prefix)
    backfill(prefix)
    drop_triggers()
    with op.batch_alter_table("users") as batch:
        batch.drop_column("avatar_path")
    with op.batch_alter_table("files") as batch:
        batch.drop_column("path")
        batch.alter_column("key", existing_type=sa.String(512), nullable=False)


def downgrade() -> None:
    prefix = prefix_arg()
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("avatar_path", sa.String(512), nullable=True))
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("path", sa.String(512), nullable=True))
        batch.alter_column("key", existing_type=sa.String(512), nullable=True)
    for move in MOVES:
        rewrite(move, move.new, move.old, lambda key: relative_path(key, prefix))
    # After the old columns are filled, or the update trigger would rewrite every key.
    create_triggers(prefix)
