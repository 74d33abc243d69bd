"""Async tasks by time across functions (finished ones pruned past their retention).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_async_tasks_created", "async_tasks", ["created_ms"])


def downgrade() -> None:
    op.drop_index("ix_async_tasks_created", "async_tasks")
