"""Expand: object keys beside the local paths (users.avatar_key, files.key), kept in step.

Safe while before-instances still run: nothing they read or write goes away. The keys are the
names ``export-files`` gave the objects, and triggers copy every later path write across (see
``migrate.runbook.ops``). ``files.path`` becomes nullable: the after-app inserts rows with only a
key. Pass the export's prefix with ``-x prefix=...`` (``migrate db upgrade --prefix``).

Revision ID: 0002
Revises: 0001
"""

from migrate.runbook.ops import expand_path_to_key, undo_expand_path_to_key

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    expand_path_to_key("users", "avatar_path", "avatar_key")
    expand_path_to_key("files", "path", "key", nullable_path=True)


def downgrade() -> None:
    undo_expand_path_to_key("files", "path", "key", nullable_path=True)
    undo_expand_path_to_key("users", "avatar_path", "avatar_key")
