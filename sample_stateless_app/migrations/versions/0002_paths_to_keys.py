"""Local upload paths become object keys: users.avatar_path -> avatar_key, files.path -> key.

Each stored path (relative to the before-app's upload folder) is rewritten by
``migrate.keys.object_key``, the same function ``migrate export-files`` names objects with.
Pass the export's prefix with ``-x prefix=...`` (default: the bucket's root).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import context, op

from migrate.keys import object_key, relative_path

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MOVES = [("users", "avatar_path", "avatar_key"), ("files", "path", "key")]


def _prefix() -> str:
    return context.get_x_argument(as_dictionary=True).get("prefix", "")


def _rewrite(table: str, column: str, convert) -> None:
    conn = op.get_bind()
    t = sa.table(table, sa.column("id"), sa.column(column))
    rows = conn.execute(sa.select(t.c.id, t.c[column]).where(t.c[column].is_not(None))).all()
    for row_id, value in rows:
        conn.execute(t.update().where(t.c.id == row_id).values({column: convert(value)}))


def upgrade() -> None:
    prefix = _prefix()
    for table, old, new in MOVES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(old, new_column_name=new)
        _rewrite(table, new, lambda path: object_key(path, prefix))


def downgrade() -> None:
    prefix = _prefix()
    for table, old, new in MOVES:
        _rewrite(table, new, lambda key: relative_path(key, prefix))
        with op.batch_alter_table(table) as batch:
            batch.alter_column(new, new_column_name=old)
