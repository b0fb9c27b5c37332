"""Contract: drop photos.path once no before-instance is left; every photo has a key.

Revision ID: 0003
Revises: 0002
"""

from migrate.runbook.ops import contract_path_to_key, undo_contract_path_to_key

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    contract_path_to_key("photos", "path", "key", nullable_key=False)


def downgrade() -> None:
    undo_contract_path_to_key("photos", "path", "key", nullable_key=False)
