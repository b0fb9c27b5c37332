"""Contract: drop the local-path columns (users.avatar_path, files.path) and their triggers.

Run once no before-instance is left. A row still without a key gets one first, with the
expand's prefix (another ``-x prefix`` is refused); ``files.key`` becomes NOT NULL. Downgrade
brings the paths back from the keys, and the triggers with them.

Revision ID: 0003
Revises: 0002
"""

from migrate.runbook.ops import contract_path_to_key, undo_contract_path_to_key

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    contract_path_to_key("users", "avatar_path", "avatar_key")
    contract_path_to_key("files", "path", "key", nullable_key=False)


def downgrade() -> None:
    undo_contract_path_to_key("files", "path", "key", nullable_key=False)
    undo_contract_path_to_key("users", "avatar_path", "avatar_key")
