"""Async tasks say which node runs them: a node re-queues only its own orphans, and the
tasks of nodes that died.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("async_tasks") as batch_op:
        batch_op.add_column(sa.Column("node_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("async_tasks") as batch_op:
        batch_op.drop_column("node_id")
