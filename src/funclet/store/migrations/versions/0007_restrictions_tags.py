"""Functions whose invocations are disabled; resource tags.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "function_restrictions",
        sa.Column("function_name", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("modified_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("function_name"),
    )
    op.create_table(
        "tags",
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=128), nullable=False),
        sa.Column("tag_key", sa.String(length=128), nullable=False),
        sa.Column("tag_value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("resource_type", "resource_id", "tag_key"),
    )


def downgrade() -> None:
    op.drop_table("tags")
    op.drop_table("function_restrictions")
