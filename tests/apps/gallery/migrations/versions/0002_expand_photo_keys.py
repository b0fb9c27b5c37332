"""Expand: photos.key (the object key) beside photos.path, filled and kept in step.

Safe while before-instances run: they keep reading and writing ``path``, and migrate's triggers
copy each write into ``key``. ``path`` becomes nullable: an after-instance stores a key only.
The keys are the names ``migrate export-files`` gave the objects, under the prefix passed with
``migrate db upgrade --prefix P`` (alembic: ``-x prefix=P``).

Revision ID: 0002
Revises: 0001
"""

from migrate.runbook.ops import expand_path_to_key, undo_expand_path_to_key

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    expand_path_to_key("photos", "path", "key", nullable_path=True)


def downgrade() -> None:
    undo_expand_path_to_key("photos", "path", "key", nullable_path=True)
