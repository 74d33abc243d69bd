"""Instance slots held by each node (PostgreSQL clusters): the account limit and
reservations are the cluster's, each node leasing what its instances use.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slot_leases",
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("pool", sa.String(length=128), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "pool"),
    )


def downgrade() -> None:
    op.drop_table("slot_leases")
