"""Nodes: each funclet registers and heartbeats; records say which node ran them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("address", sa.String(length=256), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_ms", sa.BigInteger(), nullable=False),
        sa.Column("stopped_ms", sa.BigInteger(), nullable=True),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("node_id"),
    )
    for table in ("invocations", "instances"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("node_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    for table in ("instances", "invocations"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("node_id")
    op.drop_table("nodes")
