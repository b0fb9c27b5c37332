"""The shop's alembic history (an alembic script folder; ``migrate db`` or the shop's own
``db.upgrade`` runs it). Its expand/contract revisions are written with ``migrate.runbook.ops``."""
